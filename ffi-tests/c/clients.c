/* Every client call: TCP echo, UDP echo (timeout and retries), count in each
 * framing; caller-owned buffers and the size-needed report. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static netlab_server *echo_tcp, *echo_udp;
static char tcp_addr[64], udp_addr[64];

static void tcp_echo_round_trips(void) {
    const char *msg = "Test message. This will be echoed";
    uint8_t reply[64];
    size_t len = 0;
    CHECK_OK(netlab_tcp_echo(tcp_addr, (const uint8_t *)msg, strlen(msg), 2000, reply, sizeof reply, &len));
    CHECK(len == strlen(msg) && memcmp(reply, msg, len) == 0);
    /* An empty message gets an empty reply; NULL is fine with length 0. */
    len = 99;
    CHECK_OK(netlab_tcp_echo(tcp_addr, NULL, 0, 2000, NULL, 0, &len));
    CHECK(len == 0);
}

static void tcp_echo_of_a_large_message(void) {
    size_t n = 1 << 20;
    uint8_t *msg = malloc(n), *reply = malloc(n);
    for (size_t i = 0; i < n; i++) msg[i] = (uint8_t)(i * 7);
    size_t len = 0;
    CHECK_OK(netlab_tcp_echo(tcp_addr, msg, n, 5000, reply, n, &len));
    CHECK(len == n && memcmp(reply, msg, n) == 0);
    free(msg);
    free(reply);
}

static void a_short_buffer_reports_the_size_needed(void) {
    uint8_t reply[4] = {1, 2, 3, 4};
    size_t len = 0;
    CHECK_STATUS(netlab_tcp_echo(tcp_addr, (const uint8_t *)"hello world", 11, 2000, reply, sizeof reply, &len),
                 NETLAB_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 11);
    CHECK(reply[0] == 1 && reply[3] == 4);
    CHECK_MESSAGE("11 bytes");
    CHECK_MESSAGE("4 bytes");
    len = 0;
    CHECK_STATUS(netlab_udp_echo(udp_addr, (const uint8_t *)"hello world", 11, 1000, 2, NULL, 0, &len),
                 NETLAB_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 11);
}

static void udp_echo_round_trips(void) {
    const char *msg = "This is the message. It will be repeated.";
    uint8_t reply[64];
    size_t len = 0;
    CHECK_OK(netlab_udp_echo(udp_addr, (const uint8_t *)msg, strlen(msg), 1000, 2, reply, sizeof reply, &len));
    CHECK(len == strlen(msg) && memcmp(reply, msg, len) == 0);
}

/* A UDP socket that never answers. */
static int silent_udp(char *addr, size_t len) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
    socklen_t sl = sizeof sin;
    CHECK(getsockname(fd, (struct sockaddr *)&sin, &sl) == 0);
    snprintf(addr, len, "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
    return fd;
}

/* An interrupt check that says "give up" from its third call on. */
static int interrupt_on_third(void *data) {
    int *calls = data;
    return ++*calls >= 3;
}

static void an_interrupt_check_ends_a_wait_early(void) {
    char addr[64];
    int fd = silent_udp(addr, sizeof addr);
    int calls = 0;
    uint8_t reply[8];
    size_t len = 0;
    struct timespec start, end;
    CHECK_OK(netlab_set_interrupt_check(interrupt_on_third, &calls));
    clock_gettime(CLOCK_MONOTONIC, &start);
    CHECK_STATUS(netlab_udp_echo(addr, (const uint8_t *)"x", 1, 30000, 0, reply, sizeof reply, &len),
                 NETLAB_ERR_INTERRUPTED);
    clock_gettime(CLOCK_MONOTONIC, &end);
    CHECK_MESSAGE("interrupted");
    CHECK(calls == 3);
    /* Asked every 100 ms at most: well within the 30 s timeout. */
    CHECK(end.tv_sec - start.tv_sec < 5);
    /* Removed, the calls wait out their timeouts again. */
    CHECK_OK(netlab_set_interrupt_check(NULL, NULL));
    calls = 0;
    CHECK_STATUS(netlab_udp_echo(addr, (const uint8_t *)"x", 1, 200, 0, reply, sizeof reply, &len),
                 NETLAB_ERR_TIMEOUT);
    CHECK(calls == 0);
    close(fd);
}

static void udp_echo_times_out_after_its_retries(void) {
    char addr[64];
    int fd = silent_udp(addr, sizeof addr);
    uint8_t reply[16];
    size_t len = 12345;
    CHECK_STATUS(netlab_udp_echo(addr, (const uint8_t *)"anyone?", 7, 100, 2, reply, sizeof reply, &len),
                 NETLAB_ERR_TIMEOUT);
    CHECK(len == 12345);
    CHECK_MESSAGE("no reply from");
    CHECK_MESSAGE(addr);
    CHECK_MESSAGE("3 tries of 100ms");
    close(fd);
}

static void tcp_echo_times_out_on_a_silent_peer(void) {
    /* A listener that accepts (in the kernel's backlog) but never reads
     * nor closes: the reply never comes. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
    CHECK(listen(fd, 4) == 0);
    socklen_t sl = sizeof sin;
    CHECK(getsockname(fd, (struct sockaddr *)&sin, &sl) == 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
    uint8_t reply[16];
    size_t len = 0;
    CHECK_STATUS(netlab_tcp_echo(addr, (const uint8_t *)"hello", 5, 200, reply, sizeof reply, &len),
                 NETLAB_ERR_TIMEOUT);
    CHECK_MESSAGE("timed out");
    CHECK_MESSAGE(addr);
    close(fd);
}

static void a_refused_connection_is_an_io_error(void) {
    char addr[64];
    int fd = silent_udp(addr, sizeof addr); /* a port with no TCP listener */
    uint8_t reply[16];
    size_t len = 0;
    CHECK_STATUS(netlab_tcp_echo(addr, (const uint8_t *)"x", 1, 1000, reply, sizeof reply, &len), NETLAB_ERR_IO);
    CHECK_MESSAGE("connection refused");
    close(fd);
}

static void count_in_every_framing(void) {
    static const struct {
        const char *framing;
        int c;
    } framings[] = {
        {"line", NETLAB_COUNT_FRAMING_LINE},
        {"header", NETLAB_COUNT_FRAMING_HEADER},
        {"chunk", NETLAB_COUNT_FRAMING_CHUNK},
    };
    for (size_t i = 0; i < 3; i++) {
        char config[256];
        snprintf(config, sizeof config,
                 "name = \"count\"\nservice = \"count\"\nframing = \"%s\"\nlisten = [\"127.0.0.1:0\"]\n",
                 framings[i].framing);
        netlab_server *server = start(config);
        if (!server) continue;
        char addr[64];
        address_of(server, 0, addr, sizeof addr);
        uint64_t n = 0;
        const char *msg = "h\xc3\xa9llo w\xc3\xb6rld"; /* "héllo wörld": 11 characters */
        CHECK_OK(netlab_count(addr, (const uint8_t *)msg, strlen(msg), framings[i].c, 0, 2000, &n));
        CHECK(n == 11);
        netlab_server_free(server);
    }
}

static void count_refuses_bad_arguments(void) {
    uint64_t n = 77;
    CHECK_STATUS(netlab_count(tcp_addr, (const uint8_t *)"a\nb", 3, NETLAB_COUNT_FRAMING_LINE, 0, 1000, &n),
                 NETLAB_ERR_INVALID);
    CHECK_MESSAGE("newline");
    CHECK_STATUS(netlab_count(tcp_addr, (const uint8_t *)"a", 1, 7, 0, 1000, &n), NETLAB_ERR_INVALID);
    CHECK_MESSAGE("framing 7");
    CHECK(n == 77);
}

int main(void) {
    echo_tcp = start("name = \"echo\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n");
    echo_udp = start("name = \"echo-udp\"\nservice = \"echo\"\ntransport = \"udp\"\nlisten = [\"127.0.0.1:0\"]\n");
    if (!echo_tcp || !echo_udp) FINISH();
    address_of(echo_tcp, 0, tcp_addr, sizeof tcp_addr);
    address_of(echo_udp, 0, udp_addr, sizeof udp_addr);
    RUN(tcp_echo_round_trips);
    RUN(tcp_echo_of_a_large_message);
    RUN(a_short_buffer_reports_the_size_needed);
    RUN(udp_echo_round_trips);
    RUN(udp_echo_times_out_after_its_retries);
    RUN(tcp_echo_times_out_on_a_silent_peer);
    RUN(a_refused_connection_is_an_io_error);
    RUN(an_interrupt_check_ends_a_wait_early);
    RUN(count_in_every_framing);
    RUN(count_refuses_bad_arguments);
    netlab_server_free(echo_tcp);
    netlab_server_free(echo_udp);
    FINISH();
}
