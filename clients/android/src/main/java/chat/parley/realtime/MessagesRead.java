package chat.parley.realtime;

import com.google.gson.JsonObject;

/** "Read up to a message": the answer of PUT /api/matters/{id}/read and the MessagesRead event. */
public final class MessagesRead {
    public final long clientMatterId;
    public final long readerId;
    public final long upToId;
    public final String readAt;
    /** How many messages this request marked. */
    public final long count;
    /**
     * True when {@link RealtimeChat#markMatterRead} lowered the id asked for to what the client
     * has shown ({@link #requestedUpToId} is the id asked for); up_to_id 0 means nothing was
     * shown and no request was made.
     */
    public final boolean clamped;
    public final long requestedUpToId;
    private final JsonObject json;

    private MessagesRead(JsonObject o) {
        clientMatterId = Json.number(o, "client_matter_id");
        readerId = Json.number(o, "reader_id");
        upToId = Json.number(o, "up_to_id");
        readAt = Json.string(o, "read_at");
        count = Json.number(o, "count");
        Boolean c = Json.bool(o, "clamped");
        clamped = c != null && c;
        requestedUpToId = o.has("requested_up_to_id") ? Json.number(o, "requested_up_to_id") : upToId;
        json = o;
    }

    static MessagesRead fromJson(JsonObject o) {
        if (o == null || !o.has("up_to_id")) {
            throw new IllegalArgumentException("not a read-up-to answer: " + Json.abbreviate(String.valueOf(o)));
        }
        return new MessagesRead(o);
    }

    public JsonObject json() {
        return json.deepCopy();
    }

    @Override
    public String toString() {
        return json.toString();
    }
}
