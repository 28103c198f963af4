package chat.parley.realtime;

import java.io.IOException;

/**
 * {@link RealtimeChat#markAsRead} of a message this client has not shown: not delivered to
 * {@link RealtimeChat.Listener#onMessageReceived}, not returned by a fetch method, not sent by
 * this client. Nothing was sent to the server; mark it once it was delivered.
 */
public final class NotShownException extends IOException {
    private static final long serialVersionUID = 1L;

    public final long messageId;

    NotShownException(long messageId) {
        super("message " + messageId + " has not been shown through this client (not delivered, fetched or sent by it): not marked read");
        this.messageId = messageId;
    }
}
