package chat.parley.realtime;

import com.google.gson.JsonObject;

/**
 * A chat message as the REST API and the MessageSent / MessageUpdated /
 * MessageDeleted events carry it. Fields the server adds later stay readable
 * through {@link #json()}.
 */
public final class Message {
    public final long id;
    public final String message;
    public final long clientMatterId;
    public final long senderId;
    public final String senderName;
    public final String createdAt;
    public final String updatedAt;
    /** Null unless the message was edited. */
    public final String editedAt;
    /** Null unless the message was deleted (its text is then empty). */
    public final String deletedAt;
    /** See docs/chat-api.md, "REST API": for the caller's own message the first reader's time. */
    public final String readAt;
    /** The sender's idempotency key, when the server reports it; else null. */
    public final String clientMessageId;
    /**
     * In MessageSent and the send's answer: the id of the message before this one in its matter
     * (0 for the first); null elsewhere (history pages) and from servers that do not send it.
     */
    public final Long previousId;
    private final JsonObject json;

    private Message(JsonObject o) {
        id = Json.number(o, "id");
        message = Json.string(o, "message");
        clientMatterId = Json.number(o, "client_matter_id");
        senderId = Json.number(o, "sender_id");
        senderName = Json.string(o, "sender_name");
        createdAt = Json.string(o, "created_at");
        updatedAt = Json.string(o, "updated_at");
        editedAt = Json.string(o, "edited_at");
        deletedAt = Json.string(o, "deleted_at");
        readAt = Json.string(o, "read_at");
        clientMessageId = Json.string(o, "client_message_id");
        previousId = o.has("previous_id") && !o.get("previous_id").isJsonNull() ? Long.valueOf(o.get("previous_id").getAsLong()) : null;
        json = o;
    }

    static Message fromJson(JsonObject o) {
        if (o == null || !o.has("id") || !o.has("client_matter_id")) {
            throw new IllegalArgumentException("not a message: " + Json.abbreviate(String.valueOf(o)));
        }
        return new Message(o);
    }

    /** The message object exactly as the server sent it (a copy). */
    public JsonObject json() {
        return json.deepCopy();
    }

    @Override
    public String toString() {
        return json.toString();
    }
}
