/* Session internals, shared with uncertainty/ and explain/. */
#ifndef CANDOR_SESSION_H
#define CANDOR_SESSION_H

#include "plan.h"

struct cd_session {
    const cd_model *model;
    int threads;
    cd_plan *plan; /* cached for the last input shapes */
    cd_ctx ctx;    /* scratch reused across runs */
};

/* Makes sure s->plan fits the ordered inputs. With opts non-NULL the plan is
 * always rebuilt with those options. */
cd_status cd_session_prepare(cd_session *s, const cd_tensor *const *ordered,
                             const cd_plan_options *opts, cd_error *err);

#endif
