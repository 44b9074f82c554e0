use super::*;

fn sample() -> Registry {
    let r = Registry::new();
    let echo = r.server("echo");
    let l = echo.listener("127.0.0.1:7007", ListenerKind::Tcp);
    add(&l.shard(0).accepted, 3);
    add(&l.shard(1).accepted, 2);
    add(&l.shard(9).closed, 4);
    add(&l.shard(2).bytes_received, 100);
    l.refused(Refusal::Rate);
    l.refused(Refusal::Rate);
    l.refused(Refusal::Deny);
    let chat = r.server("chat");
    chat.set_service(ServiceKind::Chat);
    chat.listener("127.0.0.1:1234", ListenerKind::Tcp);
    chat.chat.members.store(2, Ordering::Relaxed);
    add(&chat.chat.slow_readers, 1);
    let udp = r.server("udp");
    let u = udp.listener("[::1]:7", ListenerKind::Udp);
    add(&u.shard(0).datagrams_received, 10);
    u.dropped(Dropped::SourcePort, 2);
    r.daemon().reloaded(true);
    r.daemon().config_loaded();
    r
}

#[test]
fn shards_add_up_and_active_is_accepted_less_closed() {
    let r = sample();
    let l = r
        .server("echo")
        .listener("127.0.0.1:7007", ListenerKind::Tcp);
    assert_eq!(l.total(|s| &s.accepted), 5);
    assert_eq!(l.active(), 1);
    // The same name and address: the same counters (a reload carries on).
    assert!(Arc::ptr_eq(&r.server("echo"), &r.server("echo")));
    r.retain(|n| n != "echo");
    assert_eq!(
        r.server("echo").listeners().len(),
        0,
        "a new server after retain"
    );
    assert!(std::mem::align_of::<Shard>() >= 128);
}

#[test]
fn the_text_format_has_each_family_once_with_its_series() {
    let text = sample().encode(Format::Text);
    assert!(
        text.contains("# TYPE netlab_connections_accepted_total counter\n"),
        "{text}"
    );
    assert!(text.contains(
        "netlab_connections_accepted_total{server=\"echo\",listener=\"127.0.0.1:7007\"} 5\n"
    ));
    assert!(text.contains(
        "netlab_connections_refused_total{server=\"echo\",listener=\"127.0.0.1:7007\",reason=\"rate\"} 2\n"
    ));
    assert!(
        text.contains("netlab_connections_active{server=\"echo\",listener=\"127.0.0.1:7007\"} 1\n")
    );
    assert!(
        text.contains("netlab_chat_members{server=\"chat\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("netlab_chat_slow_readers_dropped_total{server=\"chat\"} 1\n"));
    assert!(text.contains(
        "netlab_datagrams_dropped_total{server=\"udp\",listener=\"[::1]:7\",reason=\"source_port\"} 2\n"
    ));
    assert!(text.contains("netlab_reloads_total{result=\"ok\"} 1\n"));
    assert!(text.contains("netlab_build_info{version=\""));
    assert!(text.contains("process_open_fds "));
    assert!(text.contains("process_resident_memory_bytes "));
    assert!(text.contains("process_start_time_seconds "));
    // No count service: no requests family; no EOF marker in 0.0.4.
    assert!(!text.contains("netlab_requests"));
    assert!(!text.contains("# EOF"));
    for family in ["netlab_connections_refused_total", "netlab_chat_members"] {
        assert_eq!(
            text.matches(&format!("# TYPE {family} ")).count(),
            1,
            "{family} once"
        );
    }
}

#[test]
fn openmetrics_ends_with_eof_and_names_counters_by_family() {
    let text = sample().encode(Format::OpenMetrics);
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("# TYPE netlab_connections_accepted counter\n"),
        "{text}"
    );
    assert!(text.contains(
        "netlab_connections_accepted_total{server=\"echo\",listener=\"127.0.0.1:7007\"} 5\n"
    ));
}

#[test]
fn accept_headers_choose_the_format() {
    assert_eq!(Format::from_accept(None), Format::Text);
    assert_eq!(Format::from_accept(Some("*/*")), Format::Text);
    assert_eq!(Format::from_accept(Some("text/plain")), Format::Text);
    assert_eq!(
        Format::from_accept(Some("application/openmetrics-text")),
        Format::OpenMetrics
    );
    // What Prometheus sends.
    assert_eq!(
        Format::from_accept(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::from_accept(Some(
            "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"
        )),
        Format::Text
    );
    assert_eq!(Format::from_accept(Some("application/json")), Format::Text);
}
