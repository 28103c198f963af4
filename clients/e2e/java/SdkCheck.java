// SdkCheck drives the official Pusher Java/Android client (pusher-websocket-java)
// against a Parley server, for test/java-sdk.test.js. It connects, subscribes to
// a public, a private and a presence channel (private and presence authorized by
// the SDK's own HttpChannelAuthorizer against an auth endpoint, as an Android app
// does against its Laravel backend) and prints one JSON object per line on stdout
// for everything the SDK reports. It exits when a line "quit" (or EOF) arrives on
// stdin, or after a bounded time.
//
// Classpath: the SDK jars (pusher-java-client.jar, Java-WebSocket.jar) plus
// gson.jar, slf4j-api.jar and slf4j-nop.jar.
//
// Usage: java SdkCheck HOST PORT KEY AUTH_URL PUBLIC PRIVATE PRESENCE EVENT TIMEOUT_SECONDS
//
// Output lines, by "type":
//   state         {previous, current, socket_id}
//   error         {message, code, exception}
//   subscribed    {channel}
//   auth_failure  {channel, message}
//   event         {channel, event, data, user_id}
//   members       {channel, me: {id, info}, members: [{id, info}]}
//   member_added / member_removed  {channel, id, info}
//   exit          {reason: "quit" | "eof" | "timeout"}

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.pusher.client.Pusher;
import com.pusher.client.PusherOptions;
import com.pusher.client.channel.PresenceChannel;
import com.pusher.client.channel.PresenceChannelEventListener;
import com.pusher.client.channel.PrivateChannelEventListener;
import com.pusher.client.channel.ChannelEventListener;
import com.pusher.client.channel.PusherEvent;
import com.pusher.client.channel.User;
import com.pusher.client.connection.ConnectionEventListener;
import com.pusher.client.connection.ConnectionState;
import com.pusher.client.connection.ConnectionStateChange;
import com.pusher.client.util.HttpChannelAuthorizer;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

public final class SdkCheck {
    private SdkCheck() {}

    // The SDK calls back on its own threads; one line must never interleave with another.
    private static synchronized void emit(JsonObject o) {
        System.out.println(o.toString());
        System.out.flush();
    }

    private static JsonObject line(String type) {
        JsonObject o = new JsonObject();
        o.addProperty("type", type);
        return o;
    }

    private static JsonObject user(User u) {
        JsonObject o = new JsonObject();
        o.addProperty("id", u.getId());
        String info = u.getInfo();
        if (info != null) {
            try {
                o.add("info", JsonParser.parseString(info));
            } catch (RuntimeException e) {
                o.addProperty("info", info);
            }
        }
        return o;
    }

    private static void event(PusherEvent e) {
        JsonObject o = line("event");
        o.addProperty("channel", e.getChannelName());
        o.addProperty("event", e.getEventName());
        o.addProperty("data", e.getData());
        o.addProperty("user_id", e.getUserId());
        emit(o);
    }

    private static void subscribed(String channel) {
        JsonObject o = line("subscribed");
        o.addProperty("channel", channel);
        emit(o);
    }

    private static void authFailure(String channel, Exception e) {
        JsonObject o = line("auth_failure");
        o.addProperty("channel", channel);
        o.addProperty("message", String.valueOf(e));
        emit(o);
    }

    private static void member(String type, String channel, User u) {
        JsonObject o = user(u);
        o.addProperty("type", type);
        o.addProperty("channel", channel);
        emit(o);
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 9) {
            System.err.println("usage: SdkCheck HOST PORT KEY AUTH_URL PUBLIC PRIVATE PRESENCE EVENT TIMEOUT_SECONDS");
            System.exit(64);
        }
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        String key = args[2];
        String authUrl = args[3];
        String publicName = args[4];
        String privateName = args[5];
        String presenceName = args[6];
        String eventName = args[7];
        long timeoutSeconds = Long.parseLong(args[8]);

        PusherOptions options = new PusherOptions()
                .setHost(host)
                .setWsPort(port)
                .setUseTLS(false)
                .setChannelAuthorizer(new HttpChannelAuthorizer(authUrl));
        Pusher pusher = new Pusher(key, options);

        CountDownLatch disconnected = new CountDownLatch(1);
        pusher.connect(new ConnectionEventListener() {
            @Override
            public void onConnectionStateChange(ConnectionStateChange change) {
                JsonObject o = line("state");
                o.addProperty("previous", change.getPreviousState().name());
                o.addProperty("current", change.getCurrentState().name());
                o.addProperty("socket_id", pusher.getConnection().getSocketId());
                emit(o);
                if (change.getCurrentState() == ConnectionState.DISCONNECTED) {
                    disconnected.countDown();
                }
            }

            @Override
            public void onError(String message, String code, Exception e) {
                JsonObject o = line("error");
                o.addProperty("message", message);
                o.addProperty("code", code);
                o.addProperty("exception", e == null ? null : e.toString());
                emit(o);
            }
        }, ConnectionState.ALL);

        // Subscriptions made before the connection is up are sent by the SDK once it is.
        pusher.subscribe(publicName, new ChannelEventListener() {
            @Override
            public void onSubscriptionSucceeded(String channel) {
                subscribed(channel);
            }

            @Override
            public void onEvent(PusherEvent e) {
                event(e);
            }
        }, eventName);

        pusher.subscribePrivate(privateName, new PrivateChannelEventListener() {
            @Override
            public void onSubscriptionSucceeded(String channel) {
                subscribed(channel);
            }

            @Override
            public void onAuthenticationFailure(String message, Exception e) {
                authFailure(privateName, e == null ? new Exception(message) : e);
            }

            @Override
            public void onEvent(PusherEvent e) {
                event(e);
            }
        }, eventName);

        pusher.subscribePresence(presenceName, new PresenceChannelEventListener() {
            @Override
            public void onSubscriptionSucceeded(String channel) {
                subscribed(channel);
            }

            @Override
            public void onAuthenticationFailure(String message, Exception e) {
                authFailure(presenceName, e == null ? new Exception(message) : e);
            }

            @Override
            public void onUsersInformationReceived(String channel, Set<User> users) {
                JsonObject o = line("members");
                o.addProperty("channel", channel);
                PresenceChannel ch = pusher.getPresenceChannel(presenceName);
                User me = ch == null ? null : ch.getMe();
                if (me != null) {
                    o.add("me", user(me));
                }
                JsonArray list = new JsonArray();
                for (User u : users) {
                    list.add(user(u));
                }
                o.add("members", list);
                emit(o);
            }

            @Override
            public void userSubscribed(String channel, User u) {
                member("member_added", channel, u);
            }

            @Override
            public void userUnsubscribed(String channel, User u) {
                member("member_removed", channel, u);
            }

            @Override
            public void onEvent(PusherEvent e) {
                event(e);
            }
        }, eventName);

        CountDownLatch stop = new CountDownLatch(1);
        AtomicReference<String> reason = new AtomicReference<>("timeout");
        Thread stdin = new Thread(() -> {
            try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
                String l;
                while ((l = in.readLine()) != null) {
                    if (l.trim().equals("quit")) {
                        reason.set("quit");
                        stop.countDown();
                        return;
                    }
                }
                reason.set("eof");
            } catch (Exception e) {
                reason.set("eof");
            }
            stop.countDown();
        }, "stdin");
        stdin.setDaemon(true);
        stdin.start();

        boolean told = stop.await(timeoutSeconds, TimeUnit.SECONDS);
        if (pusher.getConnection().getState() != ConnectionState.DISCONNECTED) {
            pusher.disconnect();
            disconnected.await(5, TimeUnit.SECONDS);
        }
        JsonObject bye = line("exit");
        bye.addProperty("reason", told ? reason.get() : "timeout");
        emit(bye);
        // The SDK's threads are not daemons: leave explicitly.
        System.exit(told ? 0 : 3);
    }
}
