/* TLS from C: servers started with `tls` in their TOML, and the clients'
 * `_with` calls given netlab_client_options: echo, count and chat over TLS,
 * client certificates, a CA that does not trust the server, bad files and
 * bad arguments. The certificates are made by the Rust harness, in the
 * directory NETLAB_TEST_PKI names. */
#define _POSIX_C_SOURCE 200809L

#include "check.h"

static char pki[512];

/* PKI/name into `buf`. */
static const char *file(char *buf, size_t len, const char *name) {
    snprintf(buf, len, "%s/%s", pki, name);
    return buf;
}

/* A server of `service` on 127.0.0.1:0 with the test certificate, and
 * `extra` inside its tls table. */
static netlab_server *tls_server(const char *service, const char *extra) {
    char config[2048], cert[600], key[600];
    snprintf(config, sizeof config,
             "name = \"t\"\nservice = \"%s\"\n"
             "listen = [{ addr = \"127.0.0.1:0\", tls = { cert = \"%s\", key = \"%s\"%s } }]\n",
             service, file(cert, sizeof cert, "server.pem"), file(key, sizeof key, "server.key"), extra);
    return start(config);
}

/* Options trusting the test CA (or `ca`), with a client certificate when asked. */
static netlab_client_options *trusting(const char *ca, bool with_cert) {
    char ca_path[600], cert[600], key[600];
    netlab_client_options *options = NULL;
    CHECK_OK(netlab_client_options_new(&options));
    CHECK_OK(netlab_client_options_set_tls(options, file(ca_path, sizeof ca_path, ca),
                                           with_cert ? file(cert, sizeof cert, "client.pem") : NULL,
                                           with_cert ? file(key, sizeof key, "client.key") : NULL));
    return options;
}

static void echo_and_count_over_tls(void) {
    netlab_server *echo = tls_server("echo", "");
    netlab_server *count = tls_server("count", "");
    if (!echo || !count) goto out;
    char addr[NETLAB_ADDRESS_MAX];
    netlab_client_options *options = trusting("ca.pem", false);
    address_of(echo, 0, addr, sizeof addr);
    uint8_t reply[64];
    size_t len = 0;
    CHECK_OK(netlab_tcp_echo_with(addr, (const uint8_t *)"over TLS", 8, 2000, options, reply, sizeof reply, &len));
    CHECK(len == 8 && memcmp(reply, "over TLS", 8) == 0);
    /* The name the certificate carries. */
    CHECK_OK(netlab_client_options_set_server_name(options, "localhost"));
    CHECK_OK(netlab_tcp_echo_with(addr, (const uint8_t *)"named", 5, 2000, options, reply, sizeof reply, &len));
    CHECK(len == 5);
    address_of(count, 0, addr, sizeof addr);
    uint64_t n = 0;
    CHECK_OK(netlab_count_with(addr, (const uint8_t *)"h\xc3\xa9llo", 6, NETLAB_COUNT_FRAMING_LINE, 0, 2000,
                               options, &n));
    CHECK(n == 5);
    netlab_server_stats stats;
    CHECK_OK(netlab_server_get_stats(echo, &stats));
    CHECK(stats.tls_handshakes == 2);
    netlab_client_options_free(options);
out:
    netlab_server_free(echo);
    netlab_server_free(count);
}

static void chat_over_tls(void) {
    netlab_server *room = NULL;
    char config[2048], cert[600], key[600];
    snprintf(config, sizeof config,
             "name = \"room\"\nservice = \"chat\"\n"
             "listen = [{ addr = \"127.0.0.1:0\", dialect = \"bincode\", tls = { cert = \"%s\", key = \"%s\" } }]\n",
             file(cert, sizeof cert, "server.pem"), file(key, sizeof key, "server.key"));
    room = start(config);
    if (!room) return;
    char addr[NETLAB_ADDRESS_MAX];
    address_of(room, 0, addr, sizeof addr);
    netlab_client_options *options = trusting("ca.pem", false);
    netlab_chat *ayu = NULL, *rafi = NULL;
    CHECK_OK(netlab_chat_connect_with(addr, NETLAB_DIALECT_BINCODE, 0, "Ayu", 2000, options, &ayu));
    CHECK_OK(netlab_chat_connect_with(addr, NETLAB_DIALECT_BINCODE, 0, "Rafi", 2000, options, &rafi));
    /* The handles keep what they need: the options may go now. */
    netlab_client_options_free(options);
    if (ayu && rafi) {
        CHECK_OK(netlab_chat_send(rafi, "halo lewat TLS"));
        netlab_chat_event ev;
        bool heard = false;
        for (int i = 0; i < 5 && !heard; i++) {
            CHECK_OK(netlab_chat_recv(ayu, 2000, &ev));
            heard = ev.kind == NETLAB_CHAT_EVENT_MESSAGE && strcmp(ev.text, "halo lewat TLS") == 0;
        }
        CHECK(heard);
    }
    netlab_chat_free(ayu);
    netlab_chat_free(rafi);
    netlab_server_free(room);
}

static void client_certificates_and_untrusted_servers(void) {
    char ca[600];
    char extra[700];
    snprintf(extra, sizeof extra, ", client_ca = \"%s\"", file(ca, sizeof ca, "ca.pem"));
    netlab_server *server = tls_server("echo", extra);
    if (!server) return;
    char addr[NETLAB_ADDRESS_MAX];
    address_of(server, 0, addr, sizeof addr);
    uint8_t reply[16];
    size_t len = 0;
    netlab_client_options *with_cert = trusting("ca.pem", true);
    netlab_client_options *without = trusting("ca.pem", false);
    netlab_client_options *other = trusting("other-ca.pem", true);
    CHECK_OK(netlab_tcp_echo_with(addr, (const uint8_t *)"ok", 2, 2000, with_cert, reply, sizeof reply, &len));
    CHECK_STATUS(netlab_tcp_echo_with(addr, (const uint8_t *)"x", 1, 2000, without, reply, sizeof reply, &len),
                 NETLAB_ERR_TLS);
    CHECK_MESSAGE("requires a client certificate");
    CHECK_STATUS(netlab_tcp_echo_with(addr, (const uint8_t *)"x", 1, 2000, other, reply, sizeof reply, &len),
                 NETLAB_ERR_TLS);
    CHECK_MESSAGE("not signed by a CA this client trusts");
    CHECK(strcmp(netlab_status_str(NETLAB_ERR_TLS), "TLS refused") == 0);
    netlab_client_options_free(with_cert);
    netlab_client_options_free(without);
    netlab_client_options_free(other);
    netlab_server_free(server);
}

static void bad_files_and_arguments(void) {
    netlab_client_options *options = NULL;
    char path[600];
    CHECK_STATUS(netlab_client_options_new(NULL), NETLAB_ERR_NULL);
    CHECK_OK(netlab_client_options_new(&options));
    CHECK_STATUS(netlab_client_options_set_tls(NULL, NULL, NULL, NULL), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_client_options_set_server_name(options, "localhost"), NETLAB_ERR_INVALID);
    CHECK_MESSAGE("set TLS first");
    CHECK_STATUS(netlab_client_options_set_tls(options, file(path, sizeof path, "missing.pem"), NULL, NULL),
                 NETLAB_ERR_TLS);
    CHECK_MESSAGE("missing.pem: cannot read it");
    CHECK_STATUS(netlab_client_options_set_tls(options, file(path, sizeof path, "server.key"), NULL, NULL),
                 NETLAB_ERR_TLS);
    CHECK_MESSAGE("no certificate in it");
    CHECK_STATUS(netlab_client_options_set_tls(options, NULL, file(path, sizeof path, "client.pem"), NULL),
                 NETLAB_ERR_TLS);
    CHECK_MESSAGE("give both or neither");
    CHECK_OK(netlab_client_options_set_tls(options, file(path, sizeof path, "ca.pem"), NULL, NULL));
    CHECK_STATUS(netlab_client_options_set_server_name(options, "not a name!"), NETLAB_ERR_INVALID);
    CHECK_STATUS(netlab_client_options_set_server_name(options, NULL), NETLAB_ERR_NULL);
    netlab_client_options_free(options);
    netlab_client_options_free(NULL);
}

int main(void) {
    const char *dir = getenv("NETLAB_TEST_PKI");
    if (!dir || strlen(dir) >= sizeof pki) {
        fprintf(stderr, "NETLAB_TEST_PKI must name the directory of the test certificates\n");
        return 2;
    }
    strcpy(pki, dir);
    RUN(echo_and_count_over_tls);
    RUN(chat_over_tls);
    RUN(client_certificates_and_untrusted_servers);
    RUN(bad_files_and_arguments);
    FINISH();
}
