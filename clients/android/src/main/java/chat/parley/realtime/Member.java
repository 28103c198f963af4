package chat.parley.realtime;

import com.google.gson.JsonObject;
import com.pusher.client.channel.User;

/** Someone online in a matter: a member of {@code presence-matter.{id}}, with the {@code user_info} the server gave. */
public final class Member {
    public final long userId;
    /** user_info.name, or null. */
    public final String name;
    /** user_info as the server sent it ({@code {}} when none). */
    public final String info;

    Member(long userId, String name, String info) {
        this.userId = userId;
        this.name = name;
        this.info = info;
    }

    static Member of(User u) {
        long id;
        try {
            id = Long.parseLong(u.getId());
        } catch (NumberFormatException e) {
            id = 0; // not a Parley user id
        }
        String info = u.getInfo();
        String name = null;
        try {
            JsonObject o = info == null ? null : Json.object(info);
            name = Json.string(o, "name");
        } catch (RuntimeException e) {
            // user_info that is not an object: keep it raw
        }
        return new Member(id, name, info == null ? "{}" : info);
    }

    @Override
    public String toString() {
        return "Member{userId=" + userId + ", name=" + name + "}";
    }
}
