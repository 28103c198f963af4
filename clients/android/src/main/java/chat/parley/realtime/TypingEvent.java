package chat.parley.realtime;

/**
 * Someone started or stopped typing in a matter: a {@code client-typing} whisper on
 * {@code private-matter.{id}}, or the end of one (a stop whisper, their message arriving, or
 * no renewal within the typing timeout).
 */
public final class TypingEvent {
    public final long matterId;
    public final long userId;
    /** The name the typist sent along, or null. */
    public final String name;
    public final boolean typing;

    TypingEvent(long matterId, long userId, String name, boolean typing) {
        this.matterId = matterId;
        this.userId = userId;
        this.name = name;
        this.typing = typing;
    }

    @Override
    public String toString() {
        return "TypingEvent{matterId=" + matterId + ", userId=" + userId + ", name=" + name + ", typing=" + typing + "}";
    }
}
