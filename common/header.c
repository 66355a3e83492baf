#include "header.h"

#include <string.h>
#include <strings.h>

#include "util.h"

#define WEBHOOK_PREFIX "webhook-"

static const char *const reserved[] = {
	/* set by bankhook on every delivery */
	"content-type", "user-agent", "expect",
	/* framing and the connection, libcurl's */
	"content-length", "transfer-encoding", "host", "connection", "keep-alive",
	"proxy-connection", "te", "trailer", "upgrade"};

bool bh_header_reserved(const char *name)
{
	if (strncasecmp(name, WEBHOOK_PREFIX, strlen(WEBHOOK_PREFIX)) == 0)
		return true;
	for (size_t i = 0; i < BH_ARRAY_LEN(reserved); i++)
		if (strcasecmp(name, reserved[i]) == 0)
			return true;
	return false;
}
