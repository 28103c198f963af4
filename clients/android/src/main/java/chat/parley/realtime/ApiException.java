package chat.parley.realtime;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The REST API answered with an error status: 401 (bad or expired token), 403 (not a member,
 * not the sender), 404, 422 (validation, with {@link #errors} per field as Laravel gives them),
 * 429 (rate limit, with {@link #retryAfterSeconds}), 503 (database unavailable).
 * A transport failure (no answer at all) is a plain {@link IOException} instead.
 */
public final class ApiException extends IOException {
    private static final long serialVersionUID = 1L;

    public final int status;
    /** The answer's "message", or its body when it was not Laravel's JSON. */
    public final String serverMessage;
    /** Field → messages, for 422; empty otherwise. */
    public final Map<String, List<String>> errors;
    /** Retry-After in seconds (429, 503), or -1. */
    public final long retryAfterSeconds;

    ApiException(String method, String url, int status, String body, String retryAfter) {
        this(method, url, status, parseMessage(body), parseErrors(body), parseRetry(retryAfter));
    }

    private ApiException(String method, String url, int status, String serverMessage,
                         Map<String, List<String>> errors, long retryAfterSeconds) {
        super(method + " " + url + " → " + status + ": " + serverMessage);
        this.status = status;
        this.serverMessage = serverMessage;
        this.errors = errors;
        this.retryAfterSeconds = retryAfterSeconds;
    }

    private static JsonObject body(String body) {
        try {
            return Json.object(body);
        } catch (RuntimeException e) {
            return null;
        }
    }

    private static String parseMessage(String body) {
        JsonObject o = body(body);
        String m = o == null ? null : Json.string(o, "message");
        return m != null ? m : Json.abbreviate(body);
    }

    private static Map<String, List<String>> parseErrors(String body) {
        JsonObject o = Json.object(body(body), "errors");
        if (o == null) {
            return Collections.emptyMap();
        }
        Map<String, List<String>> out = new LinkedHashMap<>();
        for (Map.Entry<String, JsonElement> e : o.entrySet()) {
            List<String> list = new ArrayList<>();
            if (e.getValue().isJsonArray()) {
                for (JsonElement m : e.getValue().getAsJsonArray()) {
                    list.add(m.isJsonNull() ? "" : m.getAsString());
                }
            } else if (!e.getValue().isJsonNull()) {
                list.add(e.getValue().getAsString());
            }
            out.put(e.getKey(), Collections.unmodifiableList(list));
        }
        return Collections.unmodifiableMap(out);
    }

    private static long parseRetry(String v) {
        if (v == null) {
            return -1;
        }
        try {
            return Long.parseLong(v.trim());
        } catch (NumberFormatException e) {
            return -1;
        }
    }
}
