#include <stddef.h>

#include "app.h"
