#include "queue.h"

#include "cache.h"
