#include "wire.h" /* from outside supervisor/: allowed anywhere */
#include "util.h"
