package chat.parley.realtime;

import java.io.IOException;

/**
 * {@link RealtimeChat#markAsRead} of a message the app has not been shown: no
 * {@link RealtimeChat.Listener#onMessageReceived} (or onMessageSent) for it has run yet — one
 * still waiting on the callback executor does not count —, no fetch method returned it, and it is
 * not a send of this client that sendMessage returned. Nothing was sent to the server; mark it once
 * it was delivered.
 */
public final class NotShownException extends IOException {
    private static final long serialVersionUID = 1L;

    public final long messageId;

    NotShownException(long messageId) {
        super("message " + messageId + " has not been shown through this client (no callback for it has run, not fetched or sent by it): not marked read");
        this.messageId = messageId;
    }
}
