package chat.parley.realtime;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;

/** Small, null-tolerant readers for the server's JSON (no reflection, so nothing for R8 to strip). */
final class Json {
    private Json() {}

    static JsonObject object(String text) {
        JsonElement e = JsonParser.parseString(text);
        if (!e.isJsonObject()) {
            throw new IllegalArgumentException("expected a JSON object, got: " + abbreviate(text));
        }
        return e.getAsJsonObject();
    }

    static JsonObject object(JsonObject o, String field) {
        JsonElement e = o == null ? null : o.get(field);
        return e != null && e.isJsonObject() ? e.getAsJsonObject() : null;
    }

    static String string(JsonObject o, String field) {
        JsonElement e = o == null ? null : o.get(field);
        return e == null || e.isJsonNull() ? null : e.getAsString();
    }

    static long number(JsonObject o, String field) {
        JsonElement e = o == null ? null : o.get(field);
        if (e == null || e.isJsonNull()) {
            return 0;
        }
        return e.getAsLong();
    }

    static Boolean bool(JsonObject o, String field) {
        JsonElement e = o == null ? null : o.get(field);
        if (e == null || e.isJsonNull() || !e.isJsonPrimitive()) {
            return null;
        }
        return e.getAsBoolean();
    }

    static String abbreviate(String s) {
        if (s == null) {
            return "null";
        }
        return s.length() <= 300 ? s : s.substring(0, 300) + "…";
    }
}
