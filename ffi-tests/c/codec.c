/* The codecs on their own: encode a frame, decode frames from bytes fed in
 * pieces of any size. */
#include "check.h"

static const int dialects[] = {NETLAB_DIALECT_LINE, NETLAB_DIALECT_HEADER, NETLAB_DIALECT_BINCODE};

static void encodes_each_dialect_as_documented(void) {
    uint8_t out[64];
    size_t len = 0;
    CHECK_OK(netlab_frame_encode(NETLAB_DIALECT_LINE, 0, (const uint8_t *)"hi", 2, out, sizeof out, &len));
    CHECK(len == 3 && memcmp(out, "hi\n", 3) == 0);
    CHECK_OK(netlab_frame_encode(NETLAB_DIALECT_HEADER, 0, (const uint8_t *)"hi", 2, out, sizeof out, &len));
    CHECK(len == 12 && memcmp(out, "2         hi", 12) == 0);
    CHECK_OK(netlab_frame_encode(NETLAB_DIALECT_HEADER, 4, (const uint8_t *)"hi", 2, out, sizeof out, &len));
    CHECK(len == 6 && memcmp(out, "2   hi", 6) == 0);
    CHECK_OK(netlab_frame_encode(NETLAB_DIALECT_BINCODE, 0, (const uint8_t *)"hi", 2, out, sizeof out, &len));
    CHECK(len == 6 && memcmp(out, "\0\0\0\2hi", 6) == 0);
}

static void encode_reports_the_size_needed(void) {
    uint8_t out[4];
    size_t len = 0;
    CHECK_STATUS(netlab_frame_encode(NETLAB_DIALECT_HEADER, 0, (const uint8_t *)"hi", 2, out, sizeof out, &len),
                 NETLAB_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 12);
    CHECK_STATUS(netlab_frame_encode(NETLAB_DIALECT_LINE, 0, (const uint8_t *)"a\nb", 3, out, sizeof out, &len),
                 NETLAB_ERR_INVALID);
    CHECK_STATUS(netlab_frame_encode(7, 0, (const uint8_t *)"a", 1, out, sizeof out, &len), NETLAB_ERR_INVALID);
    CHECK_MESSAGE("dialect 7");
    CHECK_STATUS(netlab_frame_encode(NETLAB_DIALECT_WEBSOCKET, 0, (const uint8_t *)"a", 1, out, sizeof out, &len),
                 NETLAB_ERR_INVALID);
    CHECK_MESSAGE("not a framing");
    netlab_decoder *decoder = NULL;
    CHECK_STATUS(netlab_decoder_new(NETLAB_DIALECT_WEBSOCKET, 0, 0, &decoder), NETLAB_ERR_INVALID);
    CHECK(decoder == NULL);
    CHECK_STATUS(netlab_frame_encode(NETLAB_DIALECT_HEADER, 1, (const uint8_t *)"0123456789", 10, out, sizeof out, &len),
                 NETLAB_ERR_INVALID);
}

/* Encodes three payloads, feeds the bytes `step` at a time, and checks that
 * exactly the three payloads come out, in order. */
static void round_trip(int dialect, size_t step) {
    const char *payloads[] = {"first", "", "third, a longer one"};
    uint8_t stream[256];
    size_t total = 0;
    for (size_t i = 0; i < 3; i++) {
        size_t len = 0;
        CHECK_OK(netlab_frame_encode(dialect, 0, (const uint8_t *)payloads[i], strlen(payloads[i]),
                                     stream + total, sizeof stream - total, &len));
        total += len;
    }
    netlab_decoder *dec = NULL;
    CHECK_OK(netlab_decoder_new(dialect, 0, 0, &dec));
    if (!dec) return;
    size_t got = 0;
    for (size_t at = 0; at < total; at += step) {
        size_t n = total - at < step ? total - at : step;
        CHECK_OK(netlab_decoder_feed(dec, stream + at, n));
        for (;;) {
            const uint8_t *frame = NULL;
            size_t len = 0;
            bool found = false;
            CHECK_OK(netlab_decoder_next(dec, &frame, &len, &found));
            if (!found) break;
            CHECK(got < 3);
            if (got < 3) CHECK(len == strlen(payloads[got]) && memcmp(frame, payloads[got], len) == 0);
            got++;
        }
    }
    CHECK(got == 3);
    size_t pending = 99;
    CHECK_OK(netlab_decoder_pending(dec, &pending));
    CHECK(pending == 0);
    netlab_decoder_free(dec);
}

static void round_trips_in_every_dialect_and_split(void) {
    for (size_t d = 0; d < 3; d++)
        for (size_t step = 1; step <= 64; step = step * 2 + 1) round_trip(dialects[d], step);
}

static void a_frame_too_long_is_a_protocol_error_that_sticks(void) {
    netlab_decoder *dec = NULL;
    CHECK_OK(netlab_decoder_new(NETLAB_DIALECT_HEADER, 10, 8, &dec));
    if (!dec) return;
    CHECK_OK(netlab_decoder_feed(dec, (const uint8_t *)"100       ", 10));
    const uint8_t *frame = NULL;
    size_t len = 0;
    bool found = false;
    CHECK_STATUS(netlab_decoder_next(dec, &frame, &len, &found), NETLAB_ERR_PROTOCOL);
    CHECK_MESSAGE("longer than the maximum of 8");
    CHECK(frame == NULL && !found);
    CHECK_STATUS(netlab_decoder_next(dec, &frame, &len, &found), NETLAB_ERR_PROTOCOL);
    netlab_decoder_free(dec);

    CHECK_OK(netlab_decoder_new(NETLAB_DIALECT_HEADER, 4, 0, &dec));
    CHECK_OK(netlab_decoder_feed(dec, (const uint8_t *)"x", 1));
    CHECK_STATUS(netlab_decoder_next(dec, &frame, &len, &found), NETLAB_ERR_PROTOCOL);
    CHECK_MESSAGE("not a decimal number");
    netlab_decoder_free(dec);
}

static void pending_counts_an_unfinished_frame(void) {
    netlab_decoder *dec = NULL;
    CHECK_OK(netlab_decoder_new(NETLAB_DIALECT_LINE, 0, 0, &dec));
    if (!dec) return;
    CHECK_OK(netlab_decoder_feed(dec, (const uint8_t *)"one\r\ntw", 7));
    const uint8_t *frame = NULL;
    size_t len = 0;
    bool found = false;
    CHECK_OK(netlab_decoder_next(dec, &frame, &len, &found));
    CHECK(found && len == 3 && memcmp(frame, "one", 3) == 0);
    CHECK_OK(netlab_decoder_next(dec, &frame, &len, &found));
    CHECK(!found);
    size_t pending = 0;
    CHECK_OK(netlab_decoder_pending(dec, &pending));
    CHECK(pending == 2);
    netlab_decoder_free(dec);
    netlab_decoder_free(NULL);
}

/* SIZE_MAX as max_frame means no limit: lines and headers decode, and a
 * header whose length would wrap header_len + len waits for its payload
 * instead of failing (it used to panic, NETLAB_ERR_PANIC). */
static void a_size_max_max_frame_is_no_limit(void) {
    const uint8_t *frame = NULL;
    size_t len = 0;
    bool found = false;
    netlab_decoder *dec = NULL;
    CHECK_OK(netlab_decoder_new(NETLAB_DIALECT_LINE, 0, SIZE_MAX, &dec));
    if (!dec) return;
    CHECK_OK(netlab_decoder_feed(dec, (const uint8_t *)"hello\n", 6));
    CHECK_OK(netlab_decoder_next(dec, &frame, &len, &found));
    CHECK(found && len == 5 && memcmp(frame, "hello", 5) == 0);
    netlab_decoder_free(dec);

    dec = NULL;
    CHECK_OK(netlab_decoder_new(NETLAB_DIALECT_HEADER, 20, SIZE_MAX, &dec));
    if (!dec) return;
    char header[32];
    snprintf(header, sizeof header, "%-20zu", (size_t)5);
    CHECK_OK(netlab_decoder_feed(dec, (const uint8_t *)header, 20));
    CHECK_OK(netlab_decoder_feed(dec, (const uint8_t *)"hello", 5));
    found = false;
    CHECK_OK(netlab_decoder_next(dec, &frame, &len, &found));
    CHECK(found && len == 5 && memcmp(frame, "hello", 5) == 0);
    snprintf(header, sizeof header, "%-20zu", (size_t)SIZE_MAX);
    CHECK_OK(netlab_decoder_feed(dec, (const uint8_t *)header, 20));
    CHECK_OK(netlab_decoder_next(dec, &frame, &len, &found));
    CHECK(!found);
    size_t pending = 0;
    CHECK_OK(netlab_decoder_pending(dec, &pending));
    CHECK(pending == 20);
    netlab_decoder_free(dec);
}

int main(void) {
    RUN(encodes_each_dialect_as_documented);
    RUN(encode_reports_the_size_needed);
    RUN(round_trips_in_every_dialect_and_split);
    RUN(a_frame_too_long_is_a_protocol_error_that_sticks);
    RUN(pending_counts_an_unfinished_frame);
    RUN(a_size_max_max_frame_is_no_limit);
    FINISH();
}
