-- wrk: refused POST /api/start_call (scripts/load). An anonymous caller from 127.0.0.1 whose
-- per-IP limit (MAX_REQUESTS_PER_IP=1 per day) the warm-up request already filled: every
-- request passes every validation and the phone policy, then the limiter answers 429.
wrk.method = "POST"
wrk.path = "/api/start_call"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"phone_number":"+351912345678","name":"Maria"}'
