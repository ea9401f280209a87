#include <string.h>

#include "../supervisor/pool.h"
#include "queue.h"
#include "ev.h"
