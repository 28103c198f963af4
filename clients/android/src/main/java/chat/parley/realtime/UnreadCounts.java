package chat.parley.realtime;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/** GET /api/messages/unread-count and the UnreadCountUpdated event: the total and each matter's count. */
public final class UnreadCounts {
    public final long userId;
    public final long unreadCount;
    /** Matter id → unread messages in it (every matter the user is a member of). */
    public final Map<Long, Long> matters;
    private final JsonObject json;

    private UnreadCounts(JsonObject o) {
        userId = Json.number(o, "user_id");
        unreadCount = Json.number(o, "unread_count");
        Map<Long, Long> m = new LinkedHashMap<>();
        JsonObject mo = Json.object(o, "matters");
        if (mo != null) {
            for (Map.Entry<String, JsonElement> e : mo.entrySet()) {
                m.put(Long.parseLong(e.getKey()), e.getValue().getAsLong());
            }
        }
        matters = Collections.unmodifiableMap(m);
        json = o;
    }

    static UnreadCounts fromJson(JsonObject o) {
        if (o == null || !o.has("unread_count")) {
            throw new IllegalArgumentException("not unread counts: " + Json.abbreviate(String.valueOf(o)));
        }
        return new UnreadCounts(o);
    }

    /** The count of one matter (0 when the server did not list it). */
    public long forMatter(long matterId) {
        Long n = matters.get(matterId);
        return n == null ? 0 : n;
    }

    public JsonObject json() {
        return json.deepCopy();
    }

    @Override
    public String toString() {
        return json.toString();
    }
}
