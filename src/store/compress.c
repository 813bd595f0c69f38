/* compress.c -- large payloads deflated on their way into a store and
 * inflated on their way out (compress.h; docs/internals/store.md,
 * "Compression"). Only payloads over the threshold get here past a length
 * check, so records of the usual size cost one comparison each way. */
#include "util/compat.h"

#include "store/compress.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "store/record.h"
#include "util/alloc.h"
#include "util/json.h"

/* zlib expands at most about 1032 times (RFC 1951's longest match from a
 * 258-byte copy of 2 bits or so): a header claiming more than that of its
 * stream is damaged, and is refused before anything is allocated for it. */
#define Z_MAX_RATIO 1032
/* Texts this long or longer get zlib's default level, shorter ones its
 * fastest (flow__z_pack). */
#define Z_LEVEL_FROM ((size_t)64 << 10)

/* ---- the threshold -------------------------------------------------------- */

static pthread_once_t threshold_once = PTHREAD_ONCE_INIT;
static _Atomic size_t threshold;

static void threshold_init(void)
{
    const char *env = getenv("FLOW_STORE_COMPRESS");
    bool off = env && (!strcmp(env, "0") || !strcmp(env, "off") || !strcmp(env, "no") ||
                       !strcmp(env, "false"));
    atomic_store(&threshold, off ? 0 : FLOW__Z_THRESHOLD);
}

size_t flow__z_threshold(void)
{
    pthread_once(&threshold_once, threshold_init);
    return atomic_load_explicit(&threshold, memory_order_relaxed);
}

void flow__z_set_threshold(size_t bytes)
{
    pthread_once(&threshold_once, threshold_init);
    atomic_store(&threshold, bytes);
}

/* ---- why the last load failed ---------------------------------------------- */

static _Thread_local char last_why[160];

/* FLOW_EIO: damaged (`what` says how); FLOW_EUNSUPPORTED: an unknown method. */
static flow_err fail(flow_err rc, const char *what)
{
    if (rc == FLOW_EIO)
        snprintf(last_why, sizeof(last_why), "damaged compressed payload (%s)", what);
    else
        snprintf(last_why, sizeof(last_why), "payload compressed by a method this libflow "
                                             "does not know (written by a newer one?)");
    return rc;
}

const char *flow__payload_why(flow_err rc)
{
    switch (rc) {
    case FLOW_EPARSE:
        return "bad JSON";
    case FLOW_ENOMEM:
        return "out of memory";
    case FLOW_EIO:
    case FLOW_EUNSUPPORTED:
        return last_why[0] ? last_why : flow_strerror(rc);
    default:
        return flow_strerror(rc);
    }
}

/* ---- zlib through libflow's allocator --------------------------------------- */

/* Not zeroed: zlib clears what it reads before writing it, and zeroing its
 * tables cost more than deflating a payload of a few KiB. */
static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    if (size && items > SIZE_MAX / size)
        return NULL;
    return flow__malloc((size_t)items * size);
}

static void z_free(voidpf opaque, voidpf p)
{
    (void)opaque;
    flow__free(p);
}

/* ---- deflate -------------------------------------------------------------------- */

flow_err flow__z_pack(struct flow__buf *b, size_t from, bool *packed)
{
    if (packed)
        *packed = false;
    size_t n = b->len - from;
    size_t limit = flow__z_threshold();
    if (limit == 0 || n <= limit || n > UINT32_MAX)
        return FLOW_OK;
    /* Worth keeping only when at least an eighth shorter: a stream that
     * does not fit in that much room is given up as soon as it fills it. */
    size_t room = n - n / 8;
    char *out = flow__malloc(room);
    if (!out)
        return FLOW_ENOMEM;
    /* A window no larger than the text, and tables to match (zlib's own
     * ratio: memLevel 8 for its 32 KiB window): setting up a stream for a
     * 5 KiB payload otherwise costs more than deflating it. Inflating
     * takes any window up to 32 KiB. The level: the fastest for the
     * payloads of every run (a 1,000-task flow's run_created record is
     * 7 KB: 3.5 times the instructions at level 6, for the same 2 KB),
     * zlib's default from Z_LEVEL_FROM on, where bytes matter more (a
     * repetitive 1 MiB output: 1 KB instead of 5 KB, 2 ms more). */
    int wbits = 9;
    while (wbits < 15 && ((size_t)1 << wbits) < n)
        wbits++;
    int level = n < Z_LEVEL_FROM ? Z_BEST_SPEED : Z_DEFAULT_COMPRESSION;
    z_stream z = {.zalloc = z_alloc, .zfree = z_free};
    if (deflateInit2(&z, level, Z_DEFLATED, wbits, wbits - 7, Z_DEFAULT_STRATEGY) != Z_OK) {
        flow__free(out);
        return FLOW_ENOMEM;
    }
    z.next_in = (Bytef *)b->data + from;
    z.avail_in = (uInt)n;
    z.next_out = (Bytef *)out + FLOW__Z_HEADER;
    z.avail_out = (uInt)(room - FLOW__Z_HEADER);
    int zr = deflate(&z, Z_FINISH);
    size_t zlen = FLOW__Z_HEADER + (size_t)z.total_out;
    deflateEnd(&z);
    if (zr == Z_MEM_ERROR) {
        flow__free(out);
        return FLOW_ENOMEM;
    }
    if (zr == Z_STREAM_END) {
        out[0] = '\0';
        out[1] = FLOW__Z_METHOD_ZLIB;
        flow__put_le32(out + 2, (uint32_t)n);
        /* Shorter than what it replaces: no allocation, cannot fail. */
        b->len = from;
        flow__buf_append(b, out, zlen);
        if (packed)
            *packed = true;
    }
    flow__free(out);
    return FLOW_OK;
}

flow_err flow__payload_append(struct flow__buf *b, const json_t *v, bool *packed)
{
    size_t from = b->len;
    if (packed)
        *packed = false;
    flow_err rc = flow__json_append(b, v, JSON_COMPACT);
    if (rc != FLOW_OK || b->len - from <= flow__z_threshold())
        return rc;
    rc = flow__z_pack(b, from, packed);
    if (rc != FLOW_OK) {
        b->len = from;
        b->data[from] = '\0';
    }
    return rc;
}

/* ---- inflate -------------------------------------------------------------------- */

/* The text of deflated payload data[0, len) into a new *text of *n bytes. */
static flow_err unpack(const char *data, size_t len, char **text, size_t *n)
{
    *text = NULL;
    if (len >= 2 && data[1] != FLOW__Z_METHOD_ZLIB)
        return fail(FLOW_EUNSUPPORTED, NULL);
    if (len < FLOW__Z_HEADER)
        return fail(FLOW_EIO, "truncated header");
    size_t want = flow__get_le32(data + 2);
    size_t zlen = len - FLOW__Z_HEADER;
    if (want == 0 || want > FLOW__BUF_DEFAULT_MAX || want / Z_MAX_RATIO > zlen ||
        zlen > UINT32_MAX)
        return fail(FLOW_EIO, "impossible length");
    char *out = flow__malloc(want);
    if (!out)
        return FLOW_ENOMEM;
    z_stream z = {.zalloc = z_alloc, .zfree = z_free};
    if (inflateInit(&z) != Z_OK) {
        flow__free(out);
        return FLOW_ENOMEM;
    }
    z.next_in = (Bytef *)data + FLOW__Z_HEADER;
    z.avail_in = (uInt)zlen;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)want;
    int zr = inflate(&z, Z_FINISH);
    flow_err rc = FLOW_OK;
    if (zr == Z_MEM_ERROR)
        rc = FLOW_ENOMEM;
    else if (zr != Z_STREAM_END)
        rc = fail(FLOW_EIO, zr == Z_DATA_ERROR && z.msg ? z.msg : "truncated or too long");
    else if (z.total_out != want || z.avail_in != 0)
        rc = fail(FLOW_EIO, "length does not match");
    inflateEnd(&z);
    if (rc != FLOW_OK) {
        flow__free(out);
        return rc;
    }
    *text = out;
    *n = want;
    return FLOW_OK;
}

flow_err flow__payload_load(const char *data, size_t len, json_t **out)
{
    *out = NULL;
    if (!flow__z_is(data, len))
        return flow__json_load(data, len, JSON_DECODE_ANY, out, NULL);
    char *text;
    size_t n;
    flow_err rc = unpack(data, len, &text, &n);
    if (rc != FLOW_OK)
        return rc;
    rc = flow__json_load(text, n, JSON_DECODE_ANY, out, NULL);
    flow__free(text);
    return rc;
}

/* ---- a lower bound of a value's text ------------------------------------------ */

/* Take at least v's compact text out of *left; true once it ran out. */
static bool over(const json_t *v, size_t *left)
{
    size_t n;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        n = 2;
        const char *key;
        json_t *item;
        json_object_foreach((json_t *)v, key, item) {
            size_t k = strlen(key) + 3; /* "key": and a comma */
            if (k >= *left)
                return true;
            *left -= k;
            if (over(item, left))
                return true;
        }
        break;
    }
    case JSON_ARRAY:
        n = 2;
        for (size_t i = 0; i < json_array_size(v); i++)
            if (over(json_array_get(v, i), left))
                return true;
        break;
    case JSON_STRING:
        n = json_string_length(v) + 2;
        break;
    default:
        n = 1; /* a number, true, false, null */
        break;
    }
    if (n >= *left)
        return true;
    *left -= n;
    return false;
}

bool flow__payload_big(const json_t *v)
{
    size_t limit = flow__z_threshold();
    size_t left = limit + 1; /* longer than the threshold: at least one more */
    return v && limit && over(v, &left);
}

/* ---- base64 ------------------------------------------------------------------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *flow__b64_encode(const char *data, size_t len)
{
    const unsigned char *in = (const unsigned char *)data;
    if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
        return NULL;
    char *out = flow__malloc((len + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    char *p = out;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t w = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *p++ = b64[w >> 18];
        *p++ = b64[(w >> 12) & 63];
        *p++ = b64[(w >> 6) & 63];
        *p++ = b64[w & 63];
    }
    if (i < len) {
        uint32_t w = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        *p++ = b64[w >> 18];
        *p++ = b64[(w >> 12) & 63];
        *p++ = i + 1 < len ? b64[(w >> 6) & 63] : '=';
        *p++ = '=';
    }
    *p = '\0';
    return out;
}

static int b64_value(unsigned char c)
{
    const char *at = c ? strchr(b64, c) : NULL;
    return at ? (int)(at - b64) : -1;
}

flow_err flow__b64_decode(const char *text, size_t len, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (len % 4)
        return FLOW_EPARSE;
    size_t pad = len && text[len - 1] == '=' ? (len > 1 && text[len - 2] == '=' ? 2 : 1) : 0;
    char *bytes = flow__malloc(len / 4 * 3 + 1);
    if (!bytes)
        return FLOW_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t w = 0;
        for (size_t k = 0; k < 4; k++) {
            int v = i + k >= len - pad ? 0 : b64_value((unsigned char)text[i + k]);
            if (v < 0) {
                flow__free(bytes);
                return FLOW_EPARSE;
            }
            w = w << 6 | (uint32_t)v;
        }
        bytes[n++] = (char)(w >> 16);
        bytes[n++] = (char)(w >> 8);
        bytes[n++] = (char)w;
    }
    *out = bytes;
    *out_len = n - pad;
    return FLOW_OK;
}
