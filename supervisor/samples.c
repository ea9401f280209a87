/*
 * samples: a ring of the master's recent readings. See samples.h.
 */
#include "samples.h"

#include <string.h>

void samples_init(struct samples *s)
{
    memset(s, 0, sizeof *s);
}

void samples_add(struct samples *s, const struct sample *sample)
{
    s->ring[s->next] = *sample;
    s->next = (s->next + 1) % SAMPLES_MAX;
    if (s->n < SAMPLES_MAX) {
        s->n++;
    }
}

const struct sample *samples_get(const struct samples *s, size_t i)
{
    return &s->ring[(s->next + SAMPLES_MAX - s->n + i) % SAMPLES_MAX];
}

json_t *samples_to_json(const struct samples *s)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < s->n; i++) {
        const struct sample *cur = samples_get(s, i);
        double rate = 0, restarts = 0;
        if (i > 0) {
            const struct sample *prev = samples_get(s, i - 1);
            double dt = cur->ts - prev->ts;
            double dr = cur->requests - prev->requests;
            /* A counter that went down (an app removed by a reload) is not negative traffic. */
            rate = dt > 0 && dr > 0 ? dr / dt : 0;
            restarts = cur->restarts > prev->restarts ? cur->restarts - prev->restarts : 0;
        }
        if (json_array_append_new(arr, json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "ts",
                                                 cur->ts, "requests", cur->requests,
                                                 "requests_per_s", rate, "restarts",
                                                 cur->restarts, "restarts_delta", restarts,
                                                 "rss_bytes", cur->rss_bytes, "workers",
                                                 cur->workers)) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    if (!arr) {
        return NULL;
    }
    return json_pack("{s:i, s:i, s:o}", "interval_s", SAMPLES_INTERVAL_S, "max", SAMPLES_MAX,
                     "samples", arr);
}
