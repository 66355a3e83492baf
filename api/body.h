/*
 * Validation of JSON request bodies. Each helper either yields the value or
 * sets a 400 reply whose message names the field ("filter.bank_id: must be
 * a string") and returns -1 / NULL, so a handler can stop at the first bad
 * field and answer nothing else.
 */
#ifndef BH_API_BODY_H
#define BH_API_BODY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "server.h"
#include "util.h"

/*
 * The body as an object whose members are all named in `allowed`
 * (NULL-terminated). An absent body is an empty object unless required.
 * Borrowed from req; NULL with the reply set.
 */
json_t *bh_body_object(struct bh_request *req, const char *const *allowed, bool required);

/* The same check for a nested object member already fetched as `v`. */
int bh_body_only_fields(struct bh_request *req, json_t *obj, const char *prefix,
			const char *const *allowed) BH_MUSTCHECK;

/*
 * A string member of min..max bytes without NUL or control characters.
 * Absent or null gives *out = NULL (400 when required). The string is
 * borrowed from obj. 0 or -1.
 */
int bh_body_string(struct bh_request *req, json_t *obj, const char *prefix, const char *key,
		   size_t min, size_t max, bool required, const char **out) BH_MUSTCHECK;

/* A boolean member; *present false when absent. 0 or -1. */
int bh_body_bool(struct bh_request *req, json_t *obj, const char *key, bool *present,
		 bool *out) BH_MUSTCHECK;

/* True for 1..max characters of [A-Za-z0-9._-]: ids callers may choose. */
bool bh_body_is_id(const char *s, size_t max);

#endif
