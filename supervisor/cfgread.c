/*
 * cfgread: config lines for inih. See cfgread.h.
 */
#include "cfgread.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define SPAN_MARK '\x01'

static void cfgread_fail(struct cfgread *r, int error, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void cfgread_fail(struct cfgread *r, int error, unsigned line, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->stopped = true;
    r->ops->on_error(r->owner, error, line, msg);
}


static bool cfgread_is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/*
 * The next raw line from the file, newline included, into r->buf. Reads no more than
 * r->line_max + 1 bytes of a line without a newline: the caller refuses such a line
 * anyway, and a file with no newline at all is then never read whole. False at the end, or on
 * a read error or when out of memory (both recorded).
 */
static bool cfgread_file_line(struct cfgread *r, const char **ret_line, size_t *ret_len)
{
    size_t n = 0;
    int c = 0;

    errno = 0;
    while (n <= r->line_max && (c = getc_unlocked(r->f)) != EOF) {
        if (n + 1 > r->buf_size) {
            size_t size = r->buf_size ? 2 * r->buf_size : 256;
            if (size > r->line_max + 2) {
                size = r->line_max + 2;
            }
            char *grown = realloc(r->buf, size);
            if (!grown) {
                cfgread_fail(r, -ENOMEM, r->lineno + 1, "out of memory");
                return false;
            }
            r->buf = grown;
            r->buf_size = size;
        }
        r->buf[n++] = (char)c;
        if (c == '\n') {
            break;
        }
    }
    if (c == EOF && ferror(r->f)) {
        int e = errno > 0 ? errno : EIO;
        cfgread_fail(r, -e, 0, "cannot read: %s", strerror(e));
        return false;
    }
    if (n == 0) {
        return false;
    }
    *ret_line = r->buf;
    *ret_len = n;
    return true;
}

/* The next raw line, newline included; false at the end or on a read error (recorded). */
static bool cfgread_next_line(struct cfgread *r, const char **ret_line, size_t *ret_len)
{
    if (r->f) {
        return cfgread_file_line(r, ret_line, ret_len);
    }
    if (r->mem_pos >= r->mem_len) {
        return false;
    }
    const char *start = r->mem + r->mem_pos;
    size_t left = r->mem_len - r->mem_pos;
    const char *nl = memchr(start, '\n', left);
    size_t n = nl ? (size_t)(nl - start) + 1 : left;
    r->mem_pos += n;
    *ret_line = start;
    *ret_len = n;
    return true;
}

/*
 * A section header: "[NAME]", blanks inside the brackets ignored, followed by nothing but
 * blanks or a comment. Returns 0 or the error recorded.
 */
static int cfgread_header(struct cfgread *r, const char *s, size_t len)
{
    const char *close = memchr(s, ']', len);

    if (!close) {
        cfgread_fail(r, -EINVAL, r->lineno, "section header has no closing ']'");
        return -EINVAL;
    }
    for (const char *p = close + 1; p < s + len && *p != ';' && *p != '#'; p++) {
        if (!cfgread_is_blank(*p)) {
            cfgread_fail(r, -EINVAL, r->lineno,
                         "unexpected text after the section header; expected [NAME]");
            return -EINVAL;
        }
    }
    const char *name = s + 1;
    const char *end = close;
    while (name < end && cfgread_is_blank(*name)) {
        name++;
    }
    while (end > name && cfgread_is_blank(end[-1])) {
        end--;
    }
    int e = r->ops->on_header(r->owner, name, (size_t)(end - name));
    if (e < 0) {
        r->stopped = true;
    }
    return e;
}

/* Writes a token for the len bytes at text into out; returns the end of what was written. */
static char *cfgread_add_span(struct cfgread *r, char *out, const char *text, size_t len)
{
    r->span[r->n_spans].text = text;
    r->span[r->n_spans].len = len;
    r->span[r->n_spans].joins = false;
    *out++ = SPAN_MARK;
    *out++ = (char)('0' + r->n_spans);
    r->n_spans++;
    return out;
}

/*
 * Emits one stretch s[a, b) of a long line into out (see cfgread_shorten): blanks at either end
 * as one blank, since inih strips them or only asks whether there is one, and what lies between
 * as a token. The name of a key (first) is kept as it is when short, so that inih's copy of it,
 * which it hands back for a continuation line, holds no token. Returns the end of what was
 * written.
 */
static char *cfgread_emit_stretch(struct cfgread *r, char *out, const char *s, size_t a,
                                 size_t b, bool first)
{
    size_t x = a, y = b;

    while (x < y && cfgread_is_blank(s[x])) {
        x++;
    }
    while (y > x && cfgread_is_blank(s[y - 1])) {
        y--;
    }
    if (x > a) {
        *out++ = s[a];
    }
    if (y > x) {
        size_t len = y - x;
        if (first && len <= CFGREAD_NAME_KEPT_MAX && !memchr(s + x, SPAN_MARK, len)) {
            memcpy(out, s + x, len);
            out += len;
        } else {
            out = cfgread_add_span(r, out, s + x, len);
        }
    }
    if (b > y && y > x) {
        *out++ = s[y];
    }
    return out;
}

/* The index of the first of chars in s[from, end), or end. */
static size_t cfgread_span_find(const char *s, size_t from, size_t end, const char *chars)
{
    while (from < end && !strchr(chars, s[from])) {
        from++;
    }
    return from;
}

/*
 * Writes into out (room for CFGREAD_SHORT_LINE_MAX bytes) a short line that inih reads exactly
 * as it would read the len bytes at s, with the stretches it never looks into handed over by
 * reference. inih, given a line, looks at: its first non-blank character (';' or '#': a
 * comment; after leading blanks and a key: a continuation, whose whole rest is more value;
 * '[': a section), on a section line the first ']', otherwise the first '=' or ':' (the end of
 * the name), the first ';' after a blank (an inline comment: the rest of the line is never
 * read), and blanks at the ends of the name and the value, which it strips. Those characters
 * are kept; every stretch between them becomes a token, SPAN_MARK and a digit, that
 * cfgread_expand() turns back into the stretch's text. At most three stretches are left, so the
 * result always fits.
 */
static void cfgread_shorten(struct cfgread *r, const char *s, size_t len, char *out)
{
    size_t first = 0, from, cut[2];
    size_t n_cut = 0;

    r->n_spans = 0;
    while (first < len && cfgread_is_blank(s[first])) {
        first++;
    }
    if (first > 0) {
        *out++ = s[0];
    }
    size_t comment = len;
    for (size_t i = first + 1; i < len; i++) {
        if (s[i] == ';' && cfgread_is_blank(s[i - 1])) {
            comment = i;
            break;
        }
    }
    /*
     * A continuation line. inih 55 takes its whole rest as more of the value; later versions
     * cut it at an inline comment first. "T0 ;T1" reads right with both: T0 is the text before
     * the comment, T1 the rest from the blanks after T0 on, and the " ;" between them, which a
     * version that cuts there never passes on, expands to nothing.
     */
    if (first > 0 && first < len && s[first] != ';' && s[first] != '#' && r->after_key) {
        if (comment == len) {
            out = cfgread_emit_stretch(r, out, s, first, len, false);
        } else {
            size_t text_end = comment, end = len;
            while (cfgread_is_blank(s[text_end - 1])) {
                text_end--; /* s[first] is not blank: it stops this */
            }
            while (cfgread_is_blank(s[end - 1])) {
                end--; /* nor is the ';' at comment */
            }
            out = cfgread_add_span(r, out, s + first, text_end - first);
            r->span[r->n_spans - 1].joins = true;
            *out++ = s[text_end];
            *out++ = ';';
            out = cfgread_add_span(r, out, s + text_end, end - text_end);
        }
        *out++ = '\n';
        *out = '\0';
        return;
    }
    from = first;
    bool section = first < len && s[first] == '[';
    if (first < len && (s[first] == ';' || s[first] == '#' || section)) {
        *out++ = s[first];
        from = first + 1;
    }
    /* The characters that end a stretch: the first '=' or ':', and a section's first ']'. */
    size_t delim = cfgread_span_find(s, from, comment, "=:");
    size_t close = section ? cfgread_span_find(s, from, comment, "]") : comment;
    if (delim < comment) {
        cut[n_cut++] = delim;
    }
    if (close < comment && close != delim) {
        cut[n_cut++] = close;
    }
    if (n_cut == 2 && cut[1] < cut[0]) {
        size_t t = cut[0];
        cut[0] = cut[1];
        cut[1] = t;
    }
    for (size_t i = 0; i < n_cut; i++) {
        out = cfgread_emit_stretch(r, out, s, from, cut[i], from == first);
        *out++ = s[cut[i]];
        from = cut[i] + 1;
    }
    out = cfgread_emit_stretch(r, out, s, from, comment, from == first);
    if (comment < len) {
        *out++ = ';';
    }
    *out++ = '\n';
    *out = '\0';
}

char *cfgread_line(char *str, int num, void *stream)
{
    struct cfgread *r = stream;
    const char *line;
    size_t len;

    /* After the first error nothing more is useful: ending the input ends the parse. */
    if (r->stopped || num < 2 || !cfgread_next_line(r, &line, &len)) {
        return NULL;
    }
    r->lineno++;
    r->n_spans = 0;

    if (memchr(line, '\0', len)) {
        cfgread_fail(r, -EINVAL, r->lineno, "line holds a NUL byte; expected text");
        return NULL;
    }
    if (len > 0 && line[len - 1] == '\n') {
        len--;
    }
    if (len > r->line_max) {
        cfgread_fail(r, -EINVAL, r->lineno,
                     "line is too long; a line may hold at most %zu characters", r->line_max);
        return NULL;
    }
    if (r->lineno == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
        line += 3; /* a UTF-8 byte order mark, as some editors write */
        len -= 3;
    }
    /* No indented line can be mistaken for a continuation once it is not indented. */
    while (len > 0 && (*line == ' ' || *line == '\t')) {
        line++;
        len--;
    }
    if (len > 0 && line[0] == '[') {
        if (cfgread_header(r, line, len) < 0) {
            return NULL;
        }
        r->after_key = false; /* inih forgets the last key at a section */
    }
    if (len <= (size_t)num - 2) {
        memcpy(str, line, len);
        str[len] = '\n';
        str[len + 1] = '\0';
        return str;
    }
    if (num < CFGREAD_SHORT_LINE_MAX) {
        cfgread_fail(r, -EINVAL, r->lineno,
                     "line is too long for this build of inih (%d bytes a line)", num);
        return NULL;
    }
    cfgread_shorten(r, line, len, str);
    return str;
}

/* Writes s with its tokens expanded into out (NULL: only counts); returns the length. */
static size_t cfgread_expand_into(const struct cfgread *r, const char *s, char *out)
{
    size_t n = 0;

    for (const char *p = s; *p; p++) {
        size_t i = (size_t)((unsigned char)p[1] - '0');
        if (*p != SPAN_MARK || p[1] < '0' || i >= r->n_spans) {
            if (out) {
                out[n] = *p;
            }
            n++;
            continue;
        }
        if (out) {
            memcpy(out + n, r->span[i].text, r->span[i].len);
        }
        n += r->span[i].len;
        p++;
        if (r->span[i].joins && cfgread_is_blank(p[1]) && p[2] == ';') {
            p += 2; /* the " ;" of a continuation line, when inih passed it on */
        }
    }
    return n;
}

static const char *cfgread_expand_to(struct cfgread *r, const char *s, char **buf, size_t *size)
{
    if (r->n_spans == 0) {
        return s;
    }
    size_t need = cfgread_expand_into(r, s, NULL) + 1;
    if (need > *size || !*buf) {
        char *grown = realloc(*buf, need);
        if (!grown) {
            return NULL;
        }
        *buf = grown;
        *size = need;
    }
    (*buf)[cfgread_expand_into(r, s, *buf)] = '\0';
    return *buf;
}

const char *cfgread_expand_name(struct cfgread *r, const char *s)
{
    return cfgread_expand_to(r, s, &r->name_buf, &r->name_size);
}

const char *cfgread_expand_value(struct cfgread *r, const char *s)
{
    return cfgread_expand_to(r, s, &r->value_buf, &r->value_size);
}

void cfgread_init(struct cfgread *r, FILE *f, const char *mem, size_t len, size_t line_max,
                  const struct cfgread_ops *ops, void *owner)
{
    *r = (struct cfgread){.ops = ops, .owner = owner, .line_max = line_max, .f = f, .mem = mem,
                          .mem_len = len};
}

void cfgread_done(struct cfgread *r)
{
    free(r->buf);
    free(r->name_buf);
    free(r->value_buf);
    r->buf = r->name_buf = r->value_buf = NULL;
}

void cfgread_stop(struct cfgread *r)
{
    r->stopped = true;
}

void cfgread_saw_key(struct cfgread *r)
{
    r->after_key = true;
}
