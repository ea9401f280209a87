/*
 * version: see version.h. DROVER_VERSION comes from the project; the test build of a "next"
 * drover overrides DROVER_VERSION_TEXT and DROVER_HANDOVER_VERSION for its binary alone.
 */
#include "version.h"

#ifndef DROVER_VERSION_TEXT
#define DROVER_VERSION_TEXT DROVER_VERSION
#endif
#ifndef DROVER_HANDOVER_VERSION
#define DROVER_HANDOVER_VERSION 1
#endif

const char drover_version[] = DROVER_VERSION_TEXT;
const unsigned drover_handover_version = DROVER_HANDOVER_VERSION;
