/*
 * statuspage: the HTML of the status page on the admin port (`/`, SPEC section 6): one
 * self-contained document, its CSS and script inline, no asset from anywhere. Read-only: it
 * shows what /health/detailed and /status/samples.json say and refreshes itself from them;
 * actions stay on the control socket.
 *
 * The script builds the page with createElement and textContent only, never innerHTML, since
 * app names, status lines and exit reasons come from configs and workers; and the endpoint sends
 * it with a Content-Security-Policy that allows no script, style or connection but its own
 * (STATUSPAGE_CSP), so the page can hold no script from elsewhere.
 */
#pragma once

#include <stddef.h>

#define STATUSPAGE_CSP                                                                          \
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "              \
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "          \
    "frame-ancestors 'none'"

/* The page, NUL-terminated, static. */
extern const char statuspage_html[];
extern const size_t statuspage_html_len;
