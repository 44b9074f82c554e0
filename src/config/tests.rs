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
