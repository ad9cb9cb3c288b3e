/* TEMPORARY: weak placeholder definitions so the library links while operator
 * files are being written. Real definitions in core/ops/<family>.c override
 * these. Removed once every operator exists. */
#include "op.h"

#define CD_OP_STUB(id, nm)                                                                    \
    __attribute__((weak)) const cd_op_def cd_opdef_##id = {nm, 100000, NULL, NULL, NULL, NULL};
CD_OP_LIST(CD_OP_STUB)
