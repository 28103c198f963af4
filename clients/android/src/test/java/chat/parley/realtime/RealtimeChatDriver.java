package chat.parley.realtime;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import com.pusher.client.channel.Channel;
import com.pusher.client.channel.PrivateChannelEventListener;
import com.pusher.client.channel.PusherEvent;
import com.pusher.client.connection.ConnectionState;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/**
 * Drives {@link RealtimeChat} instances for the end-to-end test (clients/e2e/test/android.test.js),
 * which runs it against a real {@code parley serve}. One JSON command per line on stdin, one JSON
 * object per line on stdout for every listener callback and every command's result; the test
 * decides what is right. Several clients live in one JVM, each under a name.
 *
 * <p>Commands ({@code "client"} names the instance, {@code "req"} is echoed in the result):
 * <pre>
 *   {"cmd":"new","client","host","port","key","token","userId","apiBaseUrl", optional "userName",
 *    "maxReconnectGapInSeconds","typingThrottleMillis","typingTimeoutMillis","catchUpPageSize","sendRetries",
 *    "busyCallbacks" (true: callbacks on an executor that "busy" can hold, as a busy UI thread),
 *    "readInCallback" (true: onMessageReceived calls markAsRead on the callback thread; prints readInCallback)}
 *   {"cmd":"busy","client","req"}   holds the client's callback executor (result once it is held)
 *   {"cmd":"idle","client","req"}   lets it go again
 *   {"cmd":"connect"|"disconnect"|"close"|"subscribeUser","client"}
 *   {"cmd":"subscribeMatter"|"joinPresence"|"leavePresence","client","matter"}
 *   {"cmd":"rawBind","client","channel","event"}   every delivery of that event on that channel, before any dedupe
 *   {"cmd":"send","client","matter","message", optional "clientMessageId","req"}
 *   {"cmd":"read","client","message","req"}  {"cmd":"readUpTo","client","matter","upTo","req"}
 *   {"cmd":"edit","client","message","text","req"}  {"cmd":"unread","client","req"}
 *   {"cmd":"typing"|"stopTyping","client","matter","req"}
 *   {"cmd":"history","client","matter", optional "limit","req"}   page 1, newest first
 *   {"cmd":"socketId"|"shownUpTo","client", ("matter"),"req"}
 *   {"cmd":"registerDevice","client","token","req"}  {"cmd":"unregisterDevice","client","req"}
 *   {"cmd":"appState","client","background","req"}  {"cmd":"mute","client","matter","muted","req"}
 *   {"cmd":"quit"}
 * </pre>
 * Output "type"s: state, error, subscribed, subscriptionError, messageReceived, messageSent,
 * messageUpdated, messageDeleted, messageRead, messagesRead, unread, typing, presence, caughtUp, raw,
 * readInCallback {message, ok, value | error}, result {req, ok, value | status, error}, exit.
 */
public final class RealtimeChatDriver {
    private RealtimeChatDriver() {}

    private static final Map<String, RealtimeChat> CLIENTS = new LinkedHashMap<>();
    private static final Map<String, BusyExecutor> BUSY = new LinkedHashMap<>();

    /** A callback executor (one thread) that can be held busy, as a UI thread busy with other work. */
    private static final class BusyExecutor implements Executor {
        private final ExecutorService thread = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "driver-busy-callbacks");
            t.setDaemon(true);
            return t;
        });
        private volatile CountDownLatch hold = new CountDownLatch(0);

        @Override
        public void execute(Runnable r) {
            thread.execute(r);
        }

        /** Queues a task that blocks the thread until idle(); returns once it runs. */
        void busy() throws InterruptedException {
            final CountDownLatch h = new CountDownLatch(1);
            final CountDownLatch running = new CountDownLatch(1);
            hold = h;
            thread.execute(() -> {
                running.countDown();
                try {
                    h.await(120, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            });
            if (!running.await(30, TimeUnit.SECONDS)) {
                throw new IllegalStateException("the callback executor did not get to the busy task");
            }
        }

        void idle() {
            hold.countDown();
        }
    }

    private static synchronized void emit(JsonObject o) {
        System.out.println(o.toString());
        System.out.flush();
    }

    private static JsonObject line(String client, String type) {
        JsonObject o = new JsonObject();
        o.addProperty("client", client);
        o.addProperty("type", type);
        return o;
    }

    private static void emitJson(String client, String type, String field, JsonElement value) {
        JsonObject o = line(client, type);
        o.add(field, value);
        emit(o);
    }

    /** The listener of client {@code client}; with {@code readIn} set, onMessageReceived marks each message read through it. */
    private static RealtimeChat.Listener listener(final String client, final RealtimeChat readIn) {
        return new RealtimeChat.Listener() {
            @Override
            public void onMessageReceived(Message m) {
                emitJson(client, "messageReceived", "message", m.json());
                if (readIn != null) {
                    // What an app on a background callback thread does: mark it read while showing it.
                    JsonObject o = line(client, "readInCallback");
                    o.addProperty("message", m.id);
                    try {
                        o.add("value", readIn.markAsRead(m.id).json());
                        o.addProperty("ok", true);
                    } catch (Exception e) {
                        o.addProperty("ok", false);
                        o.addProperty("error", e.toString());
                    }
                    emit(o);
                }
            }

            @Override
            public void onMessageSent(Message m) {
                emitJson(client, "messageSent", "message", m.json());
            }

            @Override
            public void onMessageUpdated(Message m) {
                emitJson(client, "messageUpdated", "message", m.json());
            }

            @Override
            public void onMessageDeleted(Message m) {
                emitJson(client, "messageDeleted", "message", m.json());
            }

            @Override
            public void onMessageRead(ReadReceipt r) {
                emitJson(client, "messageRead", "receipt", r.json());
            }

            @Override
            public void onMessagesRead(MessagesRead r) {
                emitJson(client, "messagesRead", "read", r.json());
            }

            @Override
            public void onUnreadCountUpdated(UnreadCounts c) {
                emitJson(client, "unread", "counts", c.json());
            }

            @Override
            public void onTyping(TypingEvent t) {
                JsonObject o = line(client, "typing");
                o.addProperty("matter", t.matterId);
                o.addProperty("user", t.userId);
                o.addProperty("name", t.name);
                o.addProperty("typing", t.typing);
                emit(o);
            }

            @Override
            public void onPresenceChanged(long matterId, List<Member> members) {
                JsonObject o = line(client, "presence");
                o.addProperty("matter", matterId);
                JsonArray list = new JsonArray();
                for (Member m : members) {
                    JsonObject mo = new JsonObject();
                    mo.addProperty("id", m.userId);
                    mo.addProperty("name", m.name);
                    list.add(mo);
                }
                o.add("members", list);
                emit(o);
            }

            @Override
            public void onConnectionStateChange(ConnectionState previous, ConnectionState current) {
                JsonObject o = line(client, "state");
                o.addProperty("previous", previous.name());
                o.addProperty("current", current.name());
                emit(o);
            }

            @Override
            public void onSubscribed(String channel) {
                JsonObject o = line(client, "subscribed");
                o.addProperty("channel", channel);
                emit(o);
            }

            @Override
            public void onSubscriptionError(String channel, Exception error) {
                JsonObject o = line(client, "subscriptionError");
                o.addProperty("channel", channel);
                o.addProperty("error", String.valueOf(error));
                emit(o);
            }

            @Override
            public void onCaughtUp(long matterId, int count, boolean complete) {
                JsonObject o = line(client, "caughtUp");
                o.addProperty("matter", matterId);
                o.addProperty("count", count);
                o.addProperty("complete", complete);
                emit(o);
            }

            @Override
            public void onError(String message, String code, Exception error) {
                JsonObject o = line(client, "error");
                o.addProperty("message", message);
                o.addProperty("code", code);
                o.addProperty("exception", error == null ? null : error.toString());
                emit(o);
            }
        };
    }

    private static String str(JsonObject c, String f) {
        JsonElement e = c.get(f);
        return e == null || e.isJsonNull() ? null : e.getAsString();
    }

    private static long num(JsonObject c, String f) {
        JsonElement e = c.get(f);
        return e == null || e.isJsonNull() ? 0 : e.getAsLong();
    }

    private static RealtimeChat client(JsonObject c) {
        RealtimeChat chat = CLIENTS.get(str(c, "client"));
        if (chat == null) {
            throw new IllegalArgumentException("no client " + str(c, "client"));
        }
        return chat;
    }

    private static BusyExecutor busy(String name) {
        BusyExecutor ex = BUSY.get(name);
        if (ex == null) {
            throw new IllegalArgumentException("client " + name + " was not made with busyCallbacks");
        }
        return ex;
    }

    private interface Action {
        JsonElement run() throws Exception;
    }

    private static void result(JsonObject c, Action a) {
        JsonObject o = line(str(c, "client"), "result");
        o.addProperty("req", str(c, "req"));
        try {
            JsonElement v = a.run();
            o.addProperty("ok", true);
            o.add("value", v);
        } catch (ApiException e) {
            o.addProperty("ok", false);
            o.addProperty("status", e.status);
            o.addProperty("error", e.getMessage());
        } catch (Exception e) {
            o.addProperty("ok", false);
            o.addProperty("error", e.toString());
        }
        emit(o);
    }

    private static void command(JsonObject c) {
        String cmd = str(c, "cmd");
        final String name = str(c, "client");
        switch (cmd) {
            case "new": {
                RealtimeChat.Options o = new RealtimeChat.Options()
                    .wsHost(str(c, "host")).wsPort((int) num(c, "port")).appKey(str(c, "key")).useTLS(false)
                    .authToken(str(c, "token")).userId(num(c, "userId")).apiBaseUrl(str(c, "apiBaseUrl"))
                    .userName(str(c, "userName"));
                if (c.has("maxReconnectGapInSeconds")) {
                    o.maxReconnectGapInSeconds((int) num(c, "maxReconnectGapInSeconds"));
                }
                if (c.has("typingThrottleMillis")) {
                    o.typingThrottleMillis(num(c, "typingThrottleMillis"));
                }
                if (c.has("catchUpPageSize")) {
                    o.catchUpPageSize((int) num(c, "catchUpPageSize"));
                }
                if (c.has("typingTimeoutMillis")) {
                    o.typingTimeoutMillis(num(c, "typingTimeoutMillis"));
                }
                if (c.has("sendRetries")) {
                    o.sendRetries((int) num(c, "sendRetries"));
                }
                if (c.has("busyCallbacks") && c.get("busyCallbacks").getAsBoolean()) {
                    BusyExecutor ex = new BusyExecutor();
                    BUSY.put(name, ex);
                    o.callbackExecutor(ex);
                }
                RealtimeChat chat = new RealtimeChat(o);
                boolean readInCallback = c.has("readInCallback") && c.get("readInCallback").getAsBoolean();
                chat.addListener(listener(name, readInCallback ? chat : null));
                CLIENTS.put(name, chat);
                result(c, () -> null);
                break;
            }
            case "connect":
                client(c).connect();
                break;
            case "disconnect":
                client(c).disconnect();
                break;
            case "close":
                client(c).close();
                CLIENTS.remove(name);
                if (BUSY.containsKey(name)) {
                    BUSY.remove(name).idle();
                }
                break;
            case "busy":
                result(c, () -> {
                    busy(name).busy();
                    return null;
                });
                break;
            case "idle":
                result(c, () -> {
                    busy(name).idle();
                    return null;
                });
                break;
            case "subscribeUser":
                client(c).subscribeToUserChannel();
                break;
            case "subscribeMatter":
                client(c).subscribeToMatterChannel(num(c, "matter"));
                break;
            case "joinPresence":
                client(c).joinMatterPresence(num(c, "matter"));
                break;
            case "leavePresence":
                client(c).leaveMatterPresence(num(c, "matter"));
                break;
            case "rawBind": {
                final String channel = str(c, "channel");
                Channel ch = channel.startsWith("private-")
                    ? client(c).getPusher().getPrivateChannel(channel)
                    : client(c).getPusher().getChannel(channel);
                // A private channel takes only PrivateChannelEventListener; its other callbacks stay silent.
                ch.bind(str(c, "event"), new PrivateChannelEventListener() {
                    @Override
                    public void onEvent(PusherEvent e) {
                        JsonObject o = line(name, "raw");
                        o.addProperty("channel", e.getChannelName());
                        o.addProperty("event", e.getEventName());
                        o.addProperty("data", e.getData());
                        emit(o);
                    }

                    @Override
                    public void onSubscriptionSucceeded(String channelName) {}

                    @Override
                    public void onAuthenticationFailure(String message, Exception e) {}
                });
                result(c, () -> null);
                break;
            }
            case "send":
                result(c, () -> {
                    String key = str(c, "clientMessageId");
                    Message m = key == null
                        ? client(c).sendMessage(str(c, "message"), num(c, "matter"))
                        : client(c).sendMessage(str(c, "message"), num(c, "matter"), key);
                    return m.json();
                });
                break;
            case "read":
                result(c, () -> client(c).markAsRead(num(c, "message")).json());
                break;
            case "readUpTo":
                result(c, () -> client(c).markMatterRead(num(c, "matter"), num(c, "upTo")).json());
                break;
            case "edit":
                result(c, () -> client(c).editMessage(num(c, "message"), str(c, "text")).json());
                break;
            case "delete":
                result(c, () -> client(c).deleteMessage(num(c, "message")).json());
                break;
            case "unread":
                result(c, () -> client(c).getUnreadCount().json());
                break;
            case "history":
                result(c, () -> {
                    JsonArray a = new JsonArray();
                    for (Message m : client(c).fetchMessages(num(c, "matter"), 1, c.has("limit") ? (int) num(c, "limit") : 50)) {
                        a.add(m.json());
                    }
                    return a;
                });
                break;
            case "socketId":
                result(c, () -> {
                    String id = client(c).getSocketId();
                    return id == null ? com.google.gson.JsonNull.INSTANCE : new JsonPrimitive(id);
                });
                break;
            case "shownUpTo":
                result(c, () -> {
                    Long pos = client(c).shownUpTo(num(c, "matter"));
                    return pos == null ? com.google.gson.JsonNull.INSTANCE : new JsonPrimitive(pos);
                });
                break;
            case "typing":
                result(c, () -> new JsonPrimitive(client(c).sendTyping(num(c, "matter"))));
                break;
            case "stopTyping":
                result(c, () -> new JsonPrimitive(client(c).stopTyping(num(c, "matter"))));
                break;
            case "registerDevice":
                result(c, () -> new JsonPrimitive(client(c).registerDevice(str(c, "token"))));
                break;
            case "unregisterDevice":
                result(c, () -> new JsonPrimitive(client(c).unregisterDevice()));
                break;
            case "appState":
                result(c, () -> new JsonPrimitive(client(c).setAppState(c.get("background").getAsBoolean())));
                break;
            case "mute":
                result(c, () -> {
                    client(c).setMatterMuted(num(c, "matter"), c.get("muted").getAsBoolean());
                    return null;
                });
                break;
            default:
                throw new IllegalArgumentException("unknown command " + cmd);
        }
    }

    public static void main(String[] args) throws Exception {
        String reason = "eof";
        try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
            String l;
            while ((l = in.readLine()) != null) {
                if (l.trim().isEmpty()) {
                    continue;
                }
                JsonObject c;
                try {
                    c = JsonParser.parseString(l).getAsJsonObject();
                } catch (RuntimeException e) {
                    JsonObject o = line(null, "error");
                    o.addProperty("message", "unparsable command: " + l);
                    emit(o);
                    continue;
                }
                if ("quit".equals(str(c, "cmd"))) {
                    reason = "quit";
                    break;
                }
                try {
                    command(c);
                } catch (RuntimeException e) {
                    JsonObject o = line(str(c, "client"), c.has("req") ? "result" : "error");
                    if (c.has("req")) {
                        o.addProperty("req", str(c, "req"));
                        o.addProperty("ok", false);
                    }
                    o.addProperty("message", "command " + l + " failed");
                    o.addProperty("exception", e.toString());
                    emit(o);
                }
            }
        }
        for (BusyExecutor ex : BUSY.values()) {
            ex.idle();
        }
        for (RealtimeChat chat : CLIENTS.values()) {
            chat.close();
        }
        // Give the SDKs a moment to send their close frames, bounded.
        long deadline = System.currentTimeMillis() + 5000;
        for (RealtimeChat chat : CLIENTS.values()) {
            while (chat.getConnectionState() != ConnectionState.DISCONNECTED && System.currentTimeMillis() < deadline) {
                Thread.sleep(20);
            }
        }
        JsonObject bye = line(null, "exit");
        bye.addProperty("reason", reason);
        emit(bye);
        // The SDK's threads are not daemons: leave explicitly.
        System.exit(0);
    }
}
