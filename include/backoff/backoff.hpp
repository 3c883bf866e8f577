// SPDX-License-Identifier: BSL-1.0
// backoff/backoff.hpp — everything in the core library (standard library only).
//
//   #include <backoff/backoff.hpp>
//   using namespace std::chrono_literals;
//   backoff::policy p{.schedule = backoff::exponential{.initial = 100ms, .max_delay = 10s},
//                     .stop = backoff::stop::after_attempts(4)};
//   std::string body = backoff::retry(p, [&] { return http_get(url); });
#pragma once

#include "backoff/classify.hpp"
#include "backoff/clock.hpp"
#include "backoff/breaker.hpp"
#include "backoff/budget.hpp"
#include "backoff/error.hpp"
#include "backoff/gate.hpp"
#include "backoff/host_backoff.hpp"
#include "backoff/history.hpp"
#include "backoff/jitter.hpp"
#include "backoff/metrics.hpp"
#include "backoff/observer.hpp"
#include "backoff/outcome.hpp"
#include "backoff/policy.hpp"
#include "backoff/presets.hpp"
#include "backoff/random.hpp"
#include "backoff/retry.hpp"
#include "backoff/retrying.hpp"
#include "backoff/step.hpp"
#include "backoff/schedule.hpp"
#include "backoff/stop.hpp"
#include "backoff/throttle.hpp"
