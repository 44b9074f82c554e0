/* NULL and bad arguments to every function: a status and a message, never a
 * crash, and out-parameters left alone. */
#include "check.h"

static const uint8_t *msg = (const uint8_t *)"x";

static void null_arguments_give_err_null(void) {
    netlab_server *server = NULL;
    CHECK_STATUS(netlab_server_start(NULL, &server), NETLAB_ERR_NULL);
    CHECK_MESSAGE("config is NULL");
    CHECK_STATUS(netlab_server_start("name = \"e\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n", NULL),
                 NETLAB_ERR_NULL);
    size_t n = 0;
    uint16_t port = 0;
    netlab_server_stats stats;
    char buf[64];
    CHECK_STATUS(netlab_server_listener_count(NULL, &n), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_server_port(NULL, 0, &port), NETLAB_ERR_NULL);
    CHECK_MESSAGE("server is NULL");
    CHECK_STATUS(netlab_server_address(NULL, 0, buf, sizeof buf, &n), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_server_get_stats(NULL, &stats), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_server_stop(NULL, 0), NETLAB_ERR_NULL);
    netlab_server_free(NULL);

    uint8_t reply[8];
    uint64_t count = 0;
    CHECK_STATUS(netlab_tcp_echo(NULL, msg, 1, 100, reply, 8, &n), NETLAB_ERR_NULL);
    CHECK_MESSAGE("addr is NULL");
    CHECK_STATUS(netlab_tcp_echo("127.0.0.1:1", NULL, 1, 100, reply, 8, &n), NETLAB_ERR_NULL);
    CHECK_MESSAGE("message is NULL");
    CHECK_STATUS(netlab_tcp_echo("127.0.0.1:1", msg, 1, 100, reply, 8, NULL), NETLAB_ERR_NULL);
    /* A NULL reply buffer with room claimed is refused before any exchange:
     * port 1 has no server, so a check after it would say NETLAB_ERR_IO. */
    CHECK_STATUS(netlab_tcp_echo("127.0.0.1:1", msg, 1, 100, NULL, 8, &n), NETLAB_ERR_NULL);
    CHECK_MESSAGE("reply is NULL");
    CHECK_STATUS(netlab_udp_echo("127.0.0.1:1", msg, 1, 100, 0, NULL, 8, &n), NETLAB_ERR_NULL);
    CHECK_MESSAGE("reply is NULL");
    CHECK_STATUS(netlab_udp_echo(NULL, msg, 1, 100, 0, reply, 8, &n), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_udp_echo("127.0.0.1:1", NULL, 1, 100, 0, reply, 8, &n), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_udp_echo("127.0.0.1:1", msg, 1, 100, 0, reply, 8, NULL), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_count(NULL, msg, 1, 0, 0, 100, &count), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_count("127.0.0.1:1", NULL, 1, 0, 0, 100, &count), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_count("127.0.0.1:1", msg, 1, 0, 0, 100, NULL), NETLAB_ERR_NULL);

    netlab_decoder *dec = NULL;
    const uint8_t *frame = NULL;
    bool found = false;
    CHECK_STATUS(netlab_frame_encode(0, 0, NULL, 1, reply, 8, &n), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_frame_encode(0, 0, msg, 1, NULL, 8, &n), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_frame_encode(0, 0, msg, 1, reply, 8, NULL), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_decoder_new(0, 0, 0, NULL), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_decoder_feed(NULL, msg, 1), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_decoder_next(NULL, &frame, &n, &found), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_decoder_pending(NULL, &n), NETLAB_ERR_NULL);
    CHECK_OK(netlab_decoder_new(0, 0, 0, &dec));
    CHECK_STATUS(netlab_decoder_feed(dec, NULL, 1), NETLAB_ERR_NULL);
    CHECK_OK(netlab_decoder_feed(dec, NULL, 0));
    CHECK_STATUS(netlab_decoder_next(dec, NULL, &n, &found), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_decoder_next(dec, &frame, NULL, &found), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_decoder_next(dec, &frame, &n, NULL), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_decoder_pending(dec, NULL), NETLAB_ERR_NULL);
    netlab_decoder_free(dec);
    netlab_decoder_free(NULL);
}

static void bad_arguments_give_err_invalid(void) {
    uint8_t reply[8];
    size_t n = 42;
    CHECK_STATUS(netlab_tcp_echo("not an address", msg, 1, 100, reply, 8, &n), NETLAB_ERR_INVALID);
    CHECK_MESSAGE("not an address");
    CHECK_STATUS(netlab_tcp_echo("127.0.0.1:1", msg, 1, 0, reply, 8, &n), NETLAB_ERR_INVALID);
    CHECK_STATUS(netlab_udp_echo("127.0.0.1:99999", msg, 1, 100, 0, reply, 8, &n), NETLAB_ERR_INVALID);
    CHECK_STATUS(netlab_tcp_echo("\xff\xfe:1", msg, 1, 100, reply, 8, &n), NETLAB_ERR_INVALID);
    CHECK_MESSAGE("UTF-8");
    CHECK(n == 42);

    netlab_server *server = start("name = \"e\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n");
    if (!server) return;
    uint16_t port = 7;
    CHECK_STATUS(netlab_server_port(server, 1, &port), NETLAB_ERR_INVALID);
    CHECK_MESSAGE("index 1 is out of range");
    CHECK(port == 7);
    char small[4] = "abc";
    size_t len = 0;
    CHECK_STATUS(netlab_server_address(server, 0, small, sizeof small, &len), NETLAB_ERR_BUFFER_TOO_SMALL);
    CHECK(len > sizeof small && strcmp(small, "abc") == 0);
    netlab_decoder *dec = NULL;
    CHECK_STATUS(netlab_decoder_new(-1, 0, 0, &dec), NETLAB_ERR_INVALID);
    CHECK(dec == NULL);
    /* A header so wide that framing would exhaust memory is refused. */
    CHECK_STATUS(netlab_decoder_new(NETLAB_DIALECT_HEADER, SIZE_MAX, 0, &dec), NETLAB_ERR_INVALID);
    CHECK_MESSAGE("header_len");
    CHECK(dec == NULL);
    uint8_t frame[16];
    CHECK_STATUS(netlab_frame_encode(NETLAB_DIALECT_HEADER, (size_t)1 << 40, msg, 1, frame, sizeof frame, &len),
                 NETLAB_ERR_INVALID);
    uint64_t count = 0;
    CHECK_STATUS(netlab_count("127.0.0.1:1", msg, 1, NETLAB_COUNT_FRAMING_HEADER, SIZE_MAX, 100, &count),
                 NETLAB_ERR_INVALID);
    netlab_server_free(server);
}

static void last_error_sizes_and_clears(void) {
    CHECK_STATUS(netlab_server_port(NULL, 0, NULL), NETLAB_ERR_NULL);
    size_t need = netlab_last_error(NULL, 0);
    CHECK(need == strlen("server is NULL") + 1);
    char *buf = malloc(need);
    CHECK(netlab_last_error(buf, need) == need);
    CHECK(strcmp(buf, "server is NULL") == 0);
    char tiny[3];
    CHECK(netlab_last_error(tiny, sizeof tiny) == need);
    CHECK(strcmp(tiny, "se") == 0);
    free(buf);
    /* A call that succeeds clears it. */
    netlab_decoder *dec = NULL;
    CHECK_OK(netlab_decoder_new(0, 0, 0, &dec));
    CHECK(netlab_last_error(tiny, sizeof tiny) == 1 && tiny[0] == '\0');
    netlab_decoder_free(dec);
}

int main(void) {
    RUN(null_arguments_give_err_null);
    RUN(bad_arguments_give_err_invalid);
    RUN(last_error_sizes_and_clears);
    FINISH();
}
