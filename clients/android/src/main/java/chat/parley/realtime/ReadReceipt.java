package chat.parley.realtime;

import com.google.gson.JsonObject;

/** A read receipt: the answer of PUT /api/messages/{id}/read and the MessageReceived event. */
public final class ReadReceipt {
    public final long messageId;
    public final long readerId;
    /** Null when the reader is the sender (reading your own message records nothing). */
    public final String readAt;
    public final long clientMatterId;
    private final JsonObject json;

    private ReadReceipt(JsonObject o) {
        messageId = Json.number(o, "message_id");
        readerId = Json.number(o, "reader_id");
        readAt = Json.string(o, "read_at");
        clientMatterId = Json.number(o, "client_matter_id");
        json = o;
    }

    static ReadReceipt fromJson(JsonObject o) {
        if (o == null || !o.has("message_id")) {
            throw new IllegalArgumentException("not a read receipt: " + Json.abbreviate(String.valueOf(o)));
        }
        return new ReadReceipt(o);
    }

    public JsonObject json() {
        return json.deepCopy();
    }

    @Override
    public String toString() {
        return json.toString();
    }
}
