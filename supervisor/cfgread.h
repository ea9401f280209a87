/*
 * cfgread: the lines of a config file as inih should see them, and the tokens it hands back
 * turned into text again. config.c's loader reads through it.
 *
 * Why a reader of our own in front of inih. The library as Debian builds it does not pass
 * line numbers to the handler, reads lines into a buffer of 200 bytes and silently splits a
 * longer one into two lines, and treats an indented line as the continuation of the previous
 * value. This reader hands inih one line at a time, so the handler knows the current line; it
 * hands a line too long for inih's buffer over by reference (see cfgread_shorten in cfgread.c),
 * so a value may be as long as SPEC section 3 promises; it strips leading blanks, so an
 * indented key is simply a key; and it recognises section headers itself, because inih reports
 * sections only through the keys inside them: an empty or misspelt section would otherwise go
 * unnoticed, and [app:NAME] would have no line to point at.
 *
 * Pure: it reads the FILE or buffer it is given and reports through its ops, nothing else.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* The spans one shortened line can hand over, the longest key name kept as it is, and the most
 * characters a shortened line can take. */
#define CFGREAD_SPANS_MAX 4
#define CFGREAD_NAME_KEPT_MAX 32
#define CFGREAD_SHORT_LINE_MAX 64

struct cfgread_ops {
    /* A section header [NAME], blanks around NAME trimmed (not terminated). Returns 0, or
     * -errno to end the input. */
    int (*on_header)(void *owner, const char *name, size_t len);
    /* A line refused (a NUL byte, too long, a malformed header) or a failed read (line 0), as
     * error (-errno) and message. The input ends there. */
    void (*on_error)(void *owner, int error, unsigned line, const char *message);
};

struct cfgread {
    const struct cfgread_ops *ops;
    void *owner;
    size_t line_max;    /* a longer line is refused */

    /* The input: a FILE, or a buffer in memory. */
    FILE *f;
    const char *mem;
    size_t mem_len;
    size_t mem_pos;
    char *buf;          /* the current line, read from f */
    size_t buf_size;
    unsigned lineno;    /* of the line inih is working on */
    bool stopped;       /* the input ends: after an error, ours or the owner's */

    /*
     * A line too long for inih's buffer reaches inih shortened: each stretch of it that inih
     * does not look into is replaced by a token, a mark byte and a digit, that stands for
     * span[digit]. The spans point into the current line; n_spans is 0 for a line handed over
     * as it is.
     */
    struct {
        const char *text;
        size_t len;
        bool joins; /* the blank and ';' after this token stand for nothing (a continuation) */
    } span[CFGREAD_SPANS_MAX];
    size_t n_spans;
    bool after_key;     /* a key came since the last section: inih would continue its value */
    char *name_buf;
    size_t name_size;
    char *value_buf;
    size_t value_size;
};

/* Reads f (when not NULL) or the len bytes at mem. */
void cfgread_init(struct cfgread *r, FILE *f, const char *mem, size_t len, size_t line_max,
                  const struct cfgread_ops *ops, void *owner);
void cfgread_done(struct cfgread *r);

/* inih's ini_reader (stream: the struct cfgread): an fgets() that counts lines and vets them
 * first. */
char *cfgread_line(char *str, int num, void *stream);

/* The owner failed: no more input. */
void cfgread_stop(struct cfgread *r);

/* inih gave a key on the current line: an indented line after it would be a continuation. */
void cfgread_saw_key(struct cfgread *r);

/*
 * The name or value inih took from the current line, with each token replaced by the text it
 * stands for (in a buffer of r's, valid until the next line). s itself when the line was
 * handed over as it is, or NULL when out of memory.
 */
const char *cfgread_expand_name(struct cfgread *r, const char *s);
const char *cfgread_expand_value(struct cfgread *r, const char *s);
