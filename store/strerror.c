/* store/strerror.c — the store's error codes in words, for tools that
 * print them.  Most are plain errno values; a few carry a store meaning
 * that strerror() would misname (store.h lists them). */
#include <errno.h>
#include <string.h>

#include "store/store.h"

const char *store_strerror(int rc)
{
    switch (rc) {
    case -EMLINK: return "keyword table full (64 keywords per mailbox)";
    case -ENOSPC: return "no space left on the device";
    case -EFBIG: return "message too large";
    case -EOVERFLOW: return "UIDs exhausted";
    case -EBADMSG: return "corrupt file that could not be repaired";
    default: return strerror(rc < 0 ? -rc : rc);
    }
}
