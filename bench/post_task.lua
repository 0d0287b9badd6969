-- wrk script: every request creates one no-op task (bench/http-wrk.sh).
wrk.method = "POST"
wrk.path = "/api/tasks"
wrk.body = '{"name":"bench","type":"noop"}'
wrk.headers["Content-Type"] = "application/json"

-- Anything but 201 Created is an error, not a result.
response = function(status, headers, body)
    if status ~= 201 then
        error("POST /api/tasks answered " .. status .. ": " .. body)
    end
end
