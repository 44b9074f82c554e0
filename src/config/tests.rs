use super::*;

fn errors(text: &str) -> Vec<String> {
    Config::parse(text, "t.toml")
        .expect_err("config should be refused")
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn minimal_server_gets_defaults() {
    let c = Config::parse(
        "[[server]]\nname = \"e\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.daemon, DaemonConfig::default());
    let s = &c.servers[0];
    assert_eq!((s.transport, s.model), (Transport::Tcp, Model::Event));
    assert_eq!(s.limits.max_connections, defaults::MAX_CONNECTIONS);
    assert_eq!(s.workers, defaults::workers());
    assert!(matches!(
        s.service,
        ServiceConfig::Echo(EchoService { tag_worker: false })
    ));
}

#[test]
fn left_out_keys_take_their_value_from_defaults() {
    let c = Config::parse(
        "[[server]]
name = \"u\"
service = \"echo\"
transport = \"udp\"
listen = [\"127.0.0.1:0\"]
\
         [[server]]
name = \"c\"
service = \"chat\"
listen = [\"127.0.0.1:0\"]
",
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        c.servers[0].service,
        ServiceConfig::UdpEcho(UdpEchoService::new(&defaults::DROP_SOURCE_PORTS))
    );
    assert_eq!(
        c.servers[1].limits.max_connections,
        defaults::chat_max_connections(defaults::MAX_CLIENTS)
    );
    assert_eq!(defaults::chat_max_connections(1000), 1125);
    assert_eq!(defaults::chat_max_connections(8), 24);
    assert_eq!(
        c.daemon.working_directory,
        std::path::Path::new(defaults::WORKING_DIRECTORY)
    );
}

#[test]
fn listen_tables_and_strings_mix() {
    let c = Config::parse(
        "[[server]]\nname = \"e\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\", { addr = \"[::1]:0\" }]\n",
        "t.toml",
    )
    .unwrap();
    let l = &c.servers[0].listen;
    assert_eq!(l.len(), 2);
    assert_eq!((l[0].location.line, l[0].location.column), (4, 11));
    assert_eq!((l[1].location.line, l[1].location.column), (4, 35));
}

#[test]
fn every_error_is_reported_not_only_the_first() {
    let e = errors(
        "[[server]]\nname = \"a\"\nservice = \"echo\"\nlisten = [\"nope\"]\nidle_timeout = \"soon\"\n",
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("t.toml:4:11: \"nope\" is not an address"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("t.toml:5:16: \"soon\" is not a duration"),
        "{e:?}"
    );
}

#[test]
fn single_server_text_for_the_c_abi() {
    let s = ServerConfig::parse(
        "name = \"c\"\nservice = \"count\"\nlisten = [\"127.0.0.1:0\"]\nunit = \"bytes\"\n",
        "arg",
    )
    .unwrap();
    assert!(matches!(
        s.service,
        ServiceConfig::Count(CountService {
            unit: CountUnit::Bytes,
            ..
        })
    ));
    // Lines in errors are those of the caller's text, not of the wrapped one.
    let e = ServerConfig::parse(
        "name = \"c\"\nservice = \"count\"\nlisten = [\"x\"]\n",
        "arg",
    )
    .unwrap_err();
    assert_eq!(e.0[0].location.line, 3);
    // And so are the addresses' locations, which bind errors name.
    let s = ServerConfig::parse(
        "name = \"c\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n",
        "arg",
    )
    .unwrap();
    assert_eq!(
        (s.listen[0].location.line, s.listen[0].location.column),
        (3, 11)
    );
    let e = ServerConfig::parse("", "arg").unwrap_err();
    assert!(
        e.to_string().starts_with("arg:1:1: missing field `name`"),
        "{e}"
    );
}

#[test]
fn access_list() {
    let acl = AccessList {
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        deny: vec!["127.0.0.2/32".parse().unwrap()],
    };
    assert!(acl.permits("127.0.0.1".parse().unwrap()));
    assert!(acl.permits("::ffff:127.0.0.1".parse().unwrap()));
    assert!(!acl.permits("127.0.0.2".parse().unwrap()));
    assert!(!acl.permits("::1".parse().unwrap()));
    assert!(AccessList::default().permits("::1".parse().unwrap()));
}

#[test]
fn websocket_listeners_take_origins_and_a_ping_interval() {
    let c = Config::parse(
        r#"[[server]]
name = "chat"
service = "chat"
listen = [ { addr = "127.0.0.1:0", dialect = "websocket" },
           { addr = "127.0.0.1:0", dialect = "websocket", allowed_origins = ["https://chat.example.org", "*"], ping_interval = "5s" },
           { addr = "127.0.0.1:0", dialect = "line" } ]
"#,
        "t.toml",
    )
    .unwrap();
    let ServiceConfig::Chat(chat) = &c.servers[0].service else {
        panic!("{:?}", c.servers[0].service);
    };
    let settings = |d: &Dialect| match d {
        Dialect::WebSocket(s) => (**s).clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        settings(&chat.dialects[0]),
        WebSocketSettings {
            allowed_origins: vec![],
            ping_interval: Some(defaults::PING_INTERVAL),
        }
    );
    assert_eq!(
        settings(&chat.dialects[1]),
        WebSocketSettings {
            allowed_origins: vec!["https://chat.example.org".into(), "*".into()],
            ping_interval: Some(Duration::from_secs(5)),
        }
    );
    assert_eq!(chat.dialects[2], Dialect::Line);
    assert!(chat.dialects[0].same_wire(&chat.dialects[1]));
}

#[test]
fn websocket_keys_are_checked_where_they_stand() {
    let errs = errors(
        r#"[[server]]
name = "chat"
service = "chat"
listen = [ { addr = "127.0.0.1:0", dialect = "websocket", allowed_origins = ["chat.example.org", "https://ok.example", "https://x/y"], ping_interval = "0s" },
           { addr = "127.0.0.1:0", dialect = "line", ping_interval = "5s" },
           { addr = "127.0.0.1:0", allowed_origins = ["*"] } ]
[[server]]
name = "echo"
service = "echo"
listen = [ { addr = "127.0.0.1:0", allowed_origins = ["*"] } ]
"#,
    );
    let origin = "is not an origin; expected a scheme and host as browsers send them, such as \"https://chat.example.org\" or \"http://127.0.0.1:8080\", or \"*\" for any";
    assert_eq!(
        errs,
        [
            format!("t.toml:4:78: \"chat.example.org\" {origin}"),
            format!("t.toml:4:120: \"https://x/y\" {origin}"),
            "t.toml:4:152: ping_interval must be longer than 0; it is 30s when left out".into(),
            "t.toml:5:70: ping_interval does not apply to dialects other than \"websocket\"".into(),
            "t.toml:6:54: allowed_origins does not apply to dialects other than \"websocket\""
                .into(),
            "t.toml:10:54: allowed_origins does not apply to services other than chat".into(),
        ]
    );
    let errs = errors(
        "[[server]]\nname = \"c\"\nservice = \"chat\"\nlisten = [ { addr = \"127.0.0.1:0\", pings = 1 } ]\n",
    );
    assert_eq!(
        errs,
        [
            "t.toml:4:36: unknown field `pings`, expected one of `addr`, `dialect`, `header_len`, `tls`, `allowed_origins`, `ping_interval`"
        ]
    );
    // The dialect's name is listed with the others when mistyped.
    let errs = errors(
        "[[server]]\nname = \"c\"\nservice = \"chat\"\nlisten = [ { addr = \"127.0.0.1:0\", dialect = \"ws\" } ]\n",
    );
    assert_eq!(
        errs,
        [
            "t.toml:4:46: unknown variant `ws`, expected one of `line`, `header`, `bincode`, `websocket`"
        ]
    );
}

#[test]
fn rate_keys_take_their_defaults_and_their_values() {
    let server = |extra: &str| {
        Config::parse(
            &format!(
                "[[server]]\nname = \"e\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n{extra}"
            ),
            "t.toml",
        )
        .unwrap()
        .servers
        .remove(0)
    };
    assert_eq!(server("").rate, None);
    let r = server("rate = \"20/s\"\n").rate.unwrap();
    assert_eq!(r.rate, Rate::parse("20/s").unwrap());
    assert_eq!(r.burst, 40, "twice the count");
    assert_eq!(r.source_prefix_v4, defaults::SOURCE_PREFIX_V4);
    assert_eq!(r.source_prefix_v6, defaults::SOURCE_PREFIX_V6);
    assert_eq!(r.sources, defaults::RATE_SOURCES);
    let r = server("rate = \"600/m\"\nburst = 7\nsource_prefix_v4 = 24\nsource_prefix_v6 = 48\nrate_sources = 100\n")
        .rate
        .unwrap();
    assert_eq!(
        (r.burst, r.source_prefix_v4, r.source_prefix_v6, r.sources),
        (7, 24, 48, 100)
    );
    let p = server("proxy_protocol = true\nproxy_from = [\"10.0.0.0/8\", \"::1\"]\n")
        .proxy
        .unwrap();
    assert!(p.trusts("10.1.2.3".parse().unwrap()));
    assert!(p.trusts("::ffff:10.1.2.3".parse().unwrap()));
    assert!(!p.trusts("192.0.2.1".parse().unwrap()));
    assert_eq!(server("proxy_protocol = false\n").proxy, None);
    let chat = Config::parse(
        "[[server]]\nname = \"c\"\nservice = \"chat\"\nlisten = [\"127.0.0.1:0\"]\nmessage_rate = \"10/s\"\n",
        "t.toml",
    )
    .unwrap();
    let ServiceConfig::Chat(c) = &chat.servers[0].service else {
        panic!("chat");
    };
    assert_eq!(c.message_rate, Some((Rate::parse("10/s").unwrap(), 20)));
}

#[test]
fn rate_proxy_and_metrics_errors_say_where_and_why() {
    let e = errors(
        "[daemon]\nmetrics = \"localhost:9917\"\n\
         [[server]]\nname = \"e\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n\
         rate = \"5/day\"\nburst = 0\nsource_prefix_v6 = 129\nrate_sources = 0\n\
         proxy_protocol = true\nproxy_from = []\n\
         [[server]]\nname = \"f\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n\
         proxy_from = [\"10.0.0.0/33\"]\nmessage_burst = 2\n\
         [[server]]\nname = \"c\"\nservice = \"chat\"\nlisten = [\"127.0.0.1:0\"]\nmessage_burst = 2\n",
    );
    let want = [
        "t.toml:2:11: metrics \"localhost:9917\" is not an address",
        "t.toml:7:8: rate: \"5/day\": unknown unit \"day\"",
        "t.toml:8:9: burst must be at least 1",
        "t.toml:9:20: source_prefix_v6 must be from 0 to 128",
        "t.toml:10:16: rate_sources must be at least 1",
        "t.toml:12:14: proxy_from must name at least one address or network",
        "t.toml:17:14: proxy_from does not apply to a server without proxy_protocol = true",
        "t.toml:18:17: message_burst does not apply to services other than chat",
        "t.toml:23:17: message_burst does not apply to a server without message_rate",
    ];
    for w in want {
        assert!(e.iter().any(|l| l.starts_with(w)), "{w:?} in {e:#?}");
    }
}

#[test]
fn the_metrics_address_is_read() {
    let c = Config::parse("[daemon]\nmetrics = \"[::1]:9917\"\n", "t.toml").unwrap();
    assert_eq!(c.daemon.metrics, Some("[::1]:9917".parse().unwrap()));
    assert_eq!(
        c.daemon.metrics_at.map(|l| (l.line, l.column)),
        Some((2, 11))
    );
}

#[test]
fn handshake_timeout_needs_a_tls_listener_or_proxy_protocol() {
    // On a plain server it bounded nothing, and was taken in silence.
    let e = errors(
        "[[server]]\nname = \"e\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\nhandshake_timeout = \"5s\"\n",
    );
    assert!(
        e.iter().any(|l| l.starts_with(
            "t.toml:5:21: handshake_timeout does not apply to a server with no TLS listener and no proxy_protocol"
        )),
        "{e:#?}"
    );
    let c = Config::parse(
        "[[server]]\nname = \"e\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n\
         proxy_protocol = true\nproxy_from = [\"127.0.0.1\"]\nhandshake_timeout = \"5s\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.servers[0].handshake_timeout, Duration::from_secs(5));
}

fn chat_cluster(table: &str) -> ChatConfig {
    let text = format!(
        "[[server]]\nname = \"c\"\nservice = \"chat\"\nlisten = [\"127.0.0.1:0\"]\ncluster = {table}\n"
    );
    match Config::parse(&text, "t.toml")
        .unwrap()
        .servers
        .remove(0)
        .service
    {
        ServiceConfig::Chat(chat) => chat,
        other => panic!("{other:?}"),
    }
}

#[test]
fn cluster_defaults_and_the_password_kept_out_of_sight() {
    let chat = chat_cluster(r#"{ redis = "redis://:s3cret@127.0.0.1:6379", room = "lobby" }"#);
    let cluster = chat.cluster.expect("cluster");
    assert_eq!(cluster.room, "lobby");
    assert_eq!(cluster.presence_ttl, defaults::PRESENCE_TTL);
    assert_eq!(cluster.node, defaults::cluster_node());
    assert!(cluster.node.ends_with(&format!("-{}", std::process::id())));
    // The password is there to connect with, and nowhere else.
    assert_eq!(
        cluster.redis.as_secret_str(),
        "redis://:s3cret@127.0.0.1:6379"
    );
    assert_eq!(cluster.redis.to_string(), "redis://:***@127.0.0.1:6379");
    assert!(!format!("{cluster:?}").contains("s3cret"));
    // Without a password, the URL as the crate reads it.
    let plain = chat_cluster(r#"{ redis = "redis://127.0.0.1", room = "r" }"#);
    assert_eq!(
        plain.cluster.unwrap().redis.to_string(),
        "redis://127.0.0.1"
    );
    assert_eq!(
        chat_cluster("{ redis = \"redis://127.0.0.1\", room = \"r\" }")
            .cluster
            .unwrap()
            .ca,
        None
    );
}

#[test]
fn changing_the_cluster_changes_the_server() {
    let a = chat_cluster(r#"{ redis = "redis://127.0.0.1", room = "r", node = "a" }"#);
    let same = chat_cluster(r#"{ node = "a", room = "r", redis = "redis://127.0.0.1" }"#);
    let other_room = chat_cluster(r#"{ redis = "redis://127.0.0.1", room = "s", node = "a" }"#);
    let other_ttl = chat_cluster(
        r#"{ redis = "redis://127.0.0.1", room = "r", node = "a", presence_ttl = "3s" }"#,
    );
    assert_eq!(a, same);
    assert_ne!(a, other_room);
    assert_ne!(a, other_ttl);
    let mut none = a.clone();
    none.cluster = None;
    assert_ne!(a, none);
}

#[test]
fn cluster_ca_is_for_tls_urls_and_must_hold_certificates() {
    let e = errors(
        "[[server]]\nname = \"c\"\nservice = \"chat\"\nlisten = [\"127.0.0.1:0\"]\ncluster = { redis = \"redis://127.0.0.1\", room = \"r\", ca = \"/nonexistent/ca.pem\" }\n",
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].contains("ca applies to rediss:// (TLS) URLs only"),
        "{e:?}"
    );
    assert!(e[1].contains("/nonexistent/ca.pem"), "{e:?}");
    assert!(e[1].starts_with("t.toml:5:"), "{e:?}");
}

#[test]
fn tcp_nodelay_defaults_on_and_is_refused_for_udp() {
    let echo = |extra: &str| {
        Config::parse(
            &format!(
                "[[server]]\nname = \"e\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n{extra}"
            ),
            "t.toml",
        )
    };
    assert!(echo("").unwrap().servers[0].tcp_nodelay);
    assert!(!echo("tcp_nodelay = false\n").unwrap().servers[0].tcp_nodelay);
    let e = errors(
        "[[server]]\nname = \"u\"\nservice = \"echo\"\ntransport = \"udp\"\nlisten = [\"127.0.0.1:0\"]\ntcp_nodelay = false\n",
    );
    assert!(
        e.iter()
            .any(|l| l.starts_with("t.toml:6:15: tcp_nodelay does not apply to UDP servers")),
        "{e:#?}"
    );
}
