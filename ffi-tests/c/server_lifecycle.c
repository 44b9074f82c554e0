/* Servers from TOML: start, ports, addresses, stats, stop, free. */
#include "check.h"

static void starts_echo_on_port_0_and_reports_the_port(void) {
    netlab_server *server = start("[[server]]\nname = \"echo\"\nservice = \"echo\"\n"
                                  "listen = [\"127.0.0.1:0\"]\n");
    if (!server) return;
    size_t count = 99;
    CHECK_OK(netlab_server_listener_count(server, &count));
    CHECK(count == 1);
    uint16_t port = 0;
    CHECK_OK(netlab_server_port(server, 0, &port));
    CHECK(port != 0);
    char addr[64];
    address_of(server, 0, addr, sizeof addr);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%u", (unsigned)port);
    CHECK(strcmp(addr, want) == 0);
    CHECK_OK(netlab_server_stop(server, 1000));
    /* Stopping twice is fine; the port stays readable. */
    CHECK_OK(netlab_server_stop(server, 0));
    uint16_t again = 0;
    CHECK_OK(netlab_server_port(server, 0, &again));
    CHECK(again == port);
    netlab_server_free(server);
}

static void bare_keys_without_the_table_line_work_too(void) {
    netlab_server *server = start("name = \"t\"\nservice = \"count\"\nframing = \"line\"\n"
                                  "listen = [\"127.0.0.1:0\"]\n");
    if (!server) return;
    char addr[64];
    address_of(server, 0, addr, sizeof addr);
    uint64_t n = 0;
    CHECK_OK(netlab_count(addr, (const uint8_t *)"hello", 5, NETLAB_COUNT_FRAMING_LINE, 0, 2000, &n));
    CHECK(n == 5);
    netlab_server_free(server);
}

static void every_model_and_transport_starts(void) {
    static const char *configs[] = {
        "name = \"t\"\nservice = \"echo\"\nmodel = \"event\"\nworkers = 2\nlisten = [\"127.0.0.1:0\"]\n",
        "name = \"t\"\nservice = \"echo\"\nmodel = \"thread\"\nlisten = [\"127.0.0.1:0\"]\n",
        "name = \"t\"\nservice = \"echo\"\nmodel = \"fork\"\nlisten = [\"127.0.0.1:0\"]\n",
        "name = \"t\"\nservice = \"echo\"\ntransport = \"udp\"\nlisten = [\"127.0.0.1:0\"]\n",
        "name = \"t\"\nservice = \"count\"\nmodel = \"thread\"\nlisten = [\"127.0.0.1:0\"]\n",
        "name = \"t\"\nservice = \"chat\"\nlisten = [{ addr = \"127.0.0.1:0\", dialect = \"line\" },\n"
        "          { addr = \"127.0.0.1:0\", dialect = \"header\" },\n"
        "          { addr = \"127.0.0.1:0\", dialect = \"bincode\" }]\n",
    };
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        netlab_server *server = start(configs[i]);
        if (!server) continue;
        size_t count = 0;
        CHECK_OK(netlab_server_listener_count(server, &count));
        CHECK(count == (i == 5 ? 3u : 1u));
        char addr[64];
        address_of(server, 0, addr, sizeof addr);
        if (i < 3) {
            uint8_t reply[16];
            size_t len = 0;
            CHECK_OK(netlab_tcp_echo(addr, (const uint8_t *)"hi", 2, 2000, reply, sizeof reply, &len));
            CHECK(len == 2 && memcmp(reply, "hi", 2) == 0);
        } else if (i == 3) {
            uint8_t reply[16];
            size_t len = 0;
            CHECK_OK(netlab_udp_echo(addr, (const uint8_t *)"hi", 2, 500, 3, reply, sizeof reply, &len));
            CHECK(len == 2 && memcmp(reply, "hi", 2) == 0);
        }
        CHECK_OK(netlab_server_stop(server, 500));
        netlab_server_free(server);
    }
}

static void stats_count_connections(void) {
    netlab_server *server = start("name = \"t\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n");
    if (!server) return;
    char addr[64];
    address_of(server, 0, addr, sizeof addr);
    for (int i = 0; i < 3; i++) {
        uint8_t reply[8];
        size_t len = 0;
        CHECK_OK(netlab_tcp_echo(addr, (const uint8_t *)"x", 1, 2000, reply, sizeof reply, &len));
    }
    netlab_server_stats stats;
    memset(&stats, 0xff, sizeof stats);
    CHECK_OK(netlab_server_get_stats(server, &stats));
    CHECK(stats.accepted == 3);
    CHECK(stats.refused == 0);
    /* The final figures outlive the stop, until the free. */
    CHECK_OK(netlab_server_stop(server, 100));
    memset(&stats, 0xff, sizeof stats);
    CHECK_OK(netlab_server_get_stats(server, &stats));
    CHECK(stats.accepted == 3);
    CHECK(stats.refused == 0);
    CHECK(stats.open == 0);
    netlab_server_free(server);
}

static void free_of_a_running_server_stops_it(void) {
    netlab_server *server = start("name = \"t\"\nservice = \"echo\"\nmodel = \"thread\"\nlisten = [\"127.0.0.1:0\"]\n");
    if (!server) return;
    char addr[64];
    address_of(server, 0, addr, sizeof addr);
    netlab_server_free(server);
    uint8_t reply[8];
    size_t len = 0;
    CHECK_STATUS(netlab_tcp_echo(addr, (const uint8_t *)"x", 1, 1000, reply, sizeof reply, &len),
                 NETLAB_ERR_IO);
    CHECK_MESSAGE("connection refused");
    netlab_server_free(NULL);
}

static void an_invalid_config_says_where(void) {
    netlab_server *server = (netlab_server *)&failures; /* must stay untouched */
    netlab_server *before = server;
    CHECK_STATUS(netlab_server_start("name = \"t\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\nbogus = 1\n", &server),
                 NETLAB_ERR_CONFIG);
    CHECK(server == before);
    CHECK_MESSAGE("bogus");
    CHECK_MESSAGE(":4:");
    CHECK_STATUS(netlab_server_start("name = \"t\"\nservice = \"chat\"\nmodel = \"fork\"\nlisten = [\"127.0.0.1:0\"]\n", &server),
                 NETLAB_ERR_CONFIG);
    CHECK_MESSAGE("fork");
    CHECK_STATUS(netlab_server_start("this is not toml", &server), NETLAB_ERR_CONFIG);
    CHECK(server == before);
}

static void a_port_in_use_names_the_address(void) {
    netlab_server *first = start("name = \"t\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n");
    if (!first) return;
    char addr[64];
    address_of(first, 0, addr, sizeof addr);
    char config[256];
    snprintf(config, sizeof config, "name = \"t\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\", \"%s\"]\n", addr);
    netlab_server *second = NULL;
    CHECK_STATUS(netlab_server_start(config, &second), NETLAB_ERR_ADDR_IN_USE);
    CHECK(second == NULL);
    CHECK_MESSAGE(addr);
    CHECK_MESSAGE("in use");
    netlab_server_free(first);
}

static void version_and_status_strings(void) {
    CHECK(strlen(netlab_version()) > 0);
    CHECK(strcmp(netlab_status_str(NETLAB_OK), "ok") == 0);
    CHECK(strcmp(netlab_status_str(-1), "unknown status") == 0);
    CHECK(strcmp(netlab_status_str(1000000), "unknown status") == 0);
    CHECK(strcmp(netlab_status_str(NETLAB_ERR_TIMEOUT), "timed out") == 0);
}

int main(void) {
    RUN(starts_echo_on_port_0_and_reports_the_port);
    RUN(bare_keys_without_the_table_line_work_too);
    RUN(every_model_and_transport_starts);
    RUN(stats_count_connections);
    RUN(free_of_a_running_server_stops_it);
    RUN(an_invalid_config_says_where);
    RUN(a_port_in_use_names_the_address);
    RUN(version_and_status_strings);
    FINISH();
}
