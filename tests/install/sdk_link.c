/*
 * A program built against an installed libdrover-worker, as its users build theirs: through
 * pkg-config only (tests/install/check_pkgconfig). It uses the worker API and the metrics
 * snapshot, whose number formatting needs libm, so a link that lacks a library the SDK needs
 * fails here rather than in someone's build.
 */
#include <drover/metrics.h>
#include <drover/worker.h>

#include <stdio.h>
#include <string.h>

int main(void)
{
    struct drover_worker *w = NULL;
    struct drover_metrics *reg = NULL;
    struct drover_counter *c = NULL;
    struct drover_gauge *g = NULL;
    char *json = NULL;
    int status = 1;

    /* Outside drover the SDK runs unsupervised: no channel, no listen fds. */
    if (drover_init(&w) < 0 || drover_is_supervised(w) || drover_listen_count(w) != 0) {
        fprintf(stderr, "sdk_link: drover_init outside drover failed\n");
        goto out;
    }
    if (drover_metrics_new(&reg) < 0 ||
        drover_counter_new(reg, &c, "jobs_total", "Jobs done.", (char *)NULL) < 0 ||
        drover_gauge_new(reg, &g, "load", "Load.", DROVER_AGG_MAX, (char *)NULL) < 0) {
        fprintf(stderr, "sdk_link: cannot make metrics\n");
        goto out;
    }
    drover_counter_add(c, 3);
    drover_gauge_set(g, 2.5);
    if (drover_metrics_format(reg, &json, NULL) < 0 || !strstr(json, "\"value\":3") ||
        !strstr(json, "2.5")) {
        fprintf(stderr, "sdk_link: unexpected snapshot: %s\n", json ? json : "(none)");
        goto out;
    }
    status = 0;
out:
    drover_free(json);
    drover_metrics_free(reg);
    drover_close(w);
    return status;
}
