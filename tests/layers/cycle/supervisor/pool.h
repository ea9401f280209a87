#include "util.h"
#include "queue.h"
