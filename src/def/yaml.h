/* yaml.h -- YAML (and JSON, YAML's flow subset) to jansson values, with the
 * line and column of every mapping, sequence, mapping key and value.
 *
 * Scalars are typed by the YAML 1.2 core schema: plain null/Null/NULL/~ and
 * empty are null; true/True/TRUE/false/False/FALSE are booleans; decimal,
 * 0x and 0o integers and decimal floats are numbers; anything else and every
 * quoted scalar is a string. Standard tags (!!str, !!int, !!float, !!bool,
 * !!null, !!map, !!seq, and "!") are honoured; other tags are errors. An
 * alias shares the anchored value (a new reference to it, so the tree may be
 * a DAG: do not modify it); what aliases stand for is capped so that a few
 * aliases cannot stand for billions of nodes (what is written is bounded by
 * the size of the text). A duplicate key is not an error here: the first
 * value is kept and the duplicate is listed (flow__yaml_dup_at) for the
 * caller to report in its own words.
 */
#ifndef FLOW_DEF_YAML_H
#define FLOW_DEF_YAML_H

#include <stdbool.h>
#include <stddef.h>

#include "flow.h"

/* Limits: the input size, the number of nodes aliases may stand for (all
 * of them, aliases inside anchored values expanded), and how deep
 * collections may nest. */
#define FLOW__YAML_MAX_BYTES ((size_t)64 << 20)
#define FLOW__YAML_MAX_NODES 1000000
#define FLOW__YAML_MAX_DEPTH 256

/* A place in the text, 1-based; {0, 0} when unknown. */
struct flow__yaml_pos {
    int line;
    int column;
};

/* A key given twice in one mapping. */
struct flow__yaml_dup {
    const json_t *map; /* the mapping (holds the first value) */
    const char *key;
    struct flow__yaml_pos pos; /* of the second occurrence */
};

struct flow__yaml_doc;

/* Parse `len` bytes of `text` (one document) into `*out`, which the caller
 * frees with flow__yaml_free(). `file` names the text in messages. On a
 * syntax error, an unsupported tag, a second document, a non-scalar key or
 * a limit crossed: FLOW_EPARSE with the first such problem in `err`
 * ("<what> (file:line:column)", with err->line and err->column set) and
 * *out NULL; FLOW_ENOMEM when out of memory. An empty text is a document
 * whose root is null. */
flow_err flow__yaml_parse(const char *text, size_t len, const char *file,
                          struct flow__yaml_doc **out, flow_error *err);

void flow__yaml_free(struct flow__yaml_doc *d);

/* The document's value, borrowed from `d`. */
json_t *flow__yaml_root(const struct flow__yaml_doc *d);

/* Where a mapping or sequence of the document starts ({0, 0} for anything
 * else: scalars are found through their parent, below, because jansson
 * shares one true, false and null among all values). */
struct flow__yaml_pos flow__yaml_node_pos(const struct flow__yaml_doc *d, const json_t *node);
/* Where `key` of mapping `map` is written, and where its value is. */
struct flow__yaml_pos flow__yaml_key_pos(const struct flow__yaml_doc *d, const json_t *map,
                                         const char *key);
struct flow__yaml_pos flow__yaml_value_pos(const struct flow__yaml_doc *d, const json_t *map,
                                           const char *key);
/* All of the above for member `key` of `map` in one lookup: false (and {0, 0}, {0, 0}, NULL)
 * when `map` has no such member. `*text` is as flow__yaml_value_text gives it. */
bool flow__yaml_member(const struct flow__yaml_doc *d, const json_t *map, const char *key,
                       struct flow__yaml_pos *key_pos, struct flow__yaml_pos *value_pos,
                       const char **text);
/* Where item `i` of sequence `seq` is. */
struct flow__yaml_pos flow__yaml_item_pos(const struct flow__yaml_doc *d, const json_t *seq,
                                          size_t i);

/* A plain scalar that resolved to a number, boolean or null, as written
 * ("1.10", "0x1F", "TRUE", "~"), so that callers who want text get the
 * user's spelling; NULL for strings, collections and unknown places.
 * Borrowed from `d`. */
const char *flow__yaml_value_text(const struct flow__yaml_doc *d, const json_t *map,
                                  const char *key);
const char *flow__yaml_item_text(const struct flow__yaml_doc *d, const json_t *seq, size_t i);

/* Duplicate keys, in the order they appear. */
size_t flow__yaml_dup_count(const struct flow__yaml_doc *d);
const struct flow__yaml_dup *flow__yaml_dup_at(const struct flow__yaml_doc *d, size_t i);

#endif
