package chat.parley.realtime;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.pusher.client.Pusher;
import com.pusher.client.PusherOptions;
import com.pusher.client.channel.PresenceChannel;
import com.pusher.client.channel.PresenceChannelEventListener;
import com.pusher.client.channel.PrivateChannel;
import com.pusher.client.channel.PrivateChannelEventListener;
import com.pusher.client.channel.PusherEvent;
import com.pusher.client.channel.User;
import com.pusher.client.connection.ConnectionEventListener;
import com.pusher.client.connection.ConnectionState;
import com.pusher.client.connection.ConnectionStateChange;
import com.pusher.client.util.HttpChannelAuthorizer;

import java.io.ByteArrayOutputStream;
import java.io.Closeable;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;

/**
 * Parley's realtime chat client for Android and the JVM, over the official Pusher Java client
 * ({@code com.pusher:pusher-java-client}) and the chat REST API. The same API as the JavaScript
 * {@code RealtimeChat}:
 *
 * <pre>{@code
 * RealtimeChat chat = new RealtimeChat(new RealtimeChat.Options()
 *     .wsHost("chat.example.com").wsPort(8080).appKey(APP_KEY).useTLS(false)
 *     .authToken(token).userId(me).apiBaseUrl("http://chat.example.com:8080/api"));
 * chat.addListener(new RealtimeChat.Listener() {
 *     public void onMessageReceived(Message m) { show(m); }
 * });
 * chat.subscribeToUserChannel();
 * chat.subscribeToMatterChannel(456);
 * Message sent = chat.sendMessage("Hello from Android!", 456);   // blocking: not on the main thread
 * chat.markMatterRead(456, lastShownId);                          // the conversation is on screen
 * }</pre>
 *
 * <p>Realtime: private channels {@code private-user.{userId}} and {@code private-matter.{id}},
 * authorized by the SDK's {@link HttpChannelAuthorizer} against {@code /api/broadcasting/auth}
 * with the bearer token. Events are Laravel's ({@code App\Events\MessageSent}, ...).
 *
 * <p>Reconnection: the SDK reconnects by itself and subscribes again; once a matter's
 * channel (or the user channel) is subscribed again, the messages sent meanwhile are fetched
 * with {@code GET /api/messages?client_matter_id=&after_id=} and delivered through
 * {@link Listener#onMessageReceived}. Every message is delivered once: by id, whether it came
 * on the user channel, the matter channel, a catch-up or one of this class's fetch methods.
 *
 * <p>Threads: the REST methods block (call them from a background thread on Android);
 * listener callbacks run one at a time, in order, on {@link Options#callbackExecutor} (on
 * Android pass the main thread's executor to update views directly).
 */
public final class RealtimeChat implements Closeable {
    /** The namespace Parley (and Laravel) put before event names. */
    public static final String DEFAULT_EVENT_NAMESPACE = "App\\Events\\";
    /** The client event of typing indicators, as Laravel Echo's {@code whisper('typing', ...)} sends it. */
    public static final String TYPING_EVENT = "client-typing";

    private static final String[] USER_EVENTS = {
        "MessageSent", "MessageUpdated", "MessageDeleted", "MessageReceived", "MessagesRead", "UnreadCountUpdated",
    };
    private static final String[] MATTER_EVENTS = {
        "MessageSent", "MessageUpdated", "MessageDeleted", "MessageReceived", "MessagesRead",
    };
    private static final int SEEN_CAPACITY = 20000;

    /** What the application hears. Every method has an empty default: override what you need. */
    public interface Listener {
        /** A message not seen before: live, from a catch-up after a reconnect, from anyone (also yourself on another device). */
        default void onMessageReceived(Message message) {}

        /** A message this client sent, once the server stored it. */
        default void onMessageSent(Message message) {}

        default void onMessageUpdated(Message message) {}

        /** The server deleted a message (soft: {@code deletedAt} set, text empty). */
        default void onMessageDeleted(Message message) {}

        /** Someone read a message (MessageReceived). */
        default void onMessageRead(ReadReceipt receipt) {}

        /** Someone read a matter up to a message (MessagesRead). */
        default void onMessagesRead(MessagesRead read) {}

        /** The user's unread counts: UnreadCountUpdated, and a fresh read after each reconnect. */
        default void onUnreadCountUpdated(UnreadCounts counts) {}

        default void onTyping(TypingEvent event) {}

        /** Who is online in a matter joined with {@link #joinMatterPresence}: the whole list, by user id, after every change. */
        default void onPresenceChanged(long matterId, List<Member> members) {}

        /** The SDK's connection state: CONNECTING, CONNECTED, DISCONNECTING, DISCONNECTED, RECONNECTING. */
        default void onConnectionStateChange(ConnectionState previous, ConnectionState current) {}

        /** A channel subscription succeeded (again after every reconnect). */
        default void onSubscribed(String channel) {}

        /** The auth endpoint refused a channel (e.g. 403: not a member) or could not be reached. */
        default void onSubscriptionError(String channel, Exception error) {}

        /**
         * A catch-up of a matter ended: {@code count} messages were new. {@code complete} is false
         * when it stopped after {@link Options#maxCatchUpPages} pages: reload the history then.
         */
        default void onCaughtUp(long matterId, int count, boolean complete) {}

        /**
         * A connection error from the SDK ({@code code} is Pusher's, e.g. "4001" for an unknown app
         * key, after which the SDK does not reconnect), or a failed background request (catch-up).
         */
        default void onError(String message, String code, Exception error) {}
    }

    /** Client options; {@code wsHost}, {@code appKey}, {@code authToken}, {@code userId} and {@code apiBaseUrl} are required. */
    public static final class Options {
        String wsHost;
        int wsPort = 8080;
        int wssPort = 443;
        String appKey;
        boolean useTLS;
        String authToken;
        long userId;
        String userName;
        String apiBaseUrl;
        String authEndpoint;
        String eventNamespace = DEFAULT_EVENT_NAMESPACE;
        long activityTimeoutMillis = 120_000;
        long pongTimeoutMillis = 30_000;
        int maxReconnectionAttempts = 1000;
        int maxReconnectGapInSeconds = 30;
        long typingThrottleMillis = 3000;
        long typingTimeoutMillis = 5000;
        int catchUpPageSize = 100;
        int maxCatchUpPages = 10;
        int sendRetries = 2;
        int httpTimeoutMillis = 15_000;
        Executor callbackExecutor;

        /** The WebSocket host (Parley's, or the proxy's in front of it). */
        public Options wsHost(String v) {
            wsHost = v;
            return this;
        }

        /** Port for {@code ws://} (useTLS false). Default 8080. */
        public Options wsPort(int v) {
            wsPort = v;
            return this;
        }

        /** Port for {@code wss://} (useTLS true). Default 443. */
        public Options wssPort(int v) {
            wssPort = v;
            return this;
        }

        /** The app key ({@code PARLEY_APP_KEY} / {@code REVERB_APP_KEY}). */
        public Options appKey(String v) {
            appKey = v;
            return this;
        }

        /** {@code wss://} on {@link #wssPort} instead of {@code ws://} on {@link #wsPort}. Default false. */
        public Options useTLS(boolean v) {
            useTLS = v;
            return this;
        }

        /** The API token ({@code POST /api/auth/login}'s {@code token}), sent as {@code Authorization: Bearer}. */
        public Options authToken(String v) {
            authToken = v;
            return this;
        }

        public Options userId(long v) {
            userId = v;
            return this;
        }

        /** Optional: sent with typing whispers as {@code name}. */
        public Options userName(String v) {
            userName = v;
            return this;
        }

        /** The REST API's base, e.g. {@code https://chat.example.com/api} (no trailing slash needed). */
        public Options apiBaseUrl(String v) {
            apiBaseUrl = v;
            return this;
        }

        /** Channel authorization endpoint; default {@code apiBaseUrl + "/broadcasting/auth"}. */
        public Options authEndpoint(String v) {
            authEndpoint = v;
            return this;
        }

        /** Prefix of the chat's event names; default {@code App\Events\}; "" when the server sends bare names. */
        public Options eventNamespace(String v) {
            eventNamespace = v == null ? "" : v;
            return this;
        }

        /** Silence before the client pings (SDK option). Default 120 s. */
        public Options activityTimeoutMillis(long v) {
            activityTimeoutMillis = v;
            return this;
        }

        /** Wait for the pong before reconnecting (SDK option). Default 30 s. */
        public Options pongTimeoutMillis(long v) {
            pongTimeoutMillis = v;
            return this;
        }

        /** SDK reconnect attempts (gaps of 1, 4, 9, ... s up to the max gap) before DISCONNECTED. Default 1000. */
        public Options maxReconnectionAttempts(int v) {
            maxReconnectionAttempts = v;
            return this;
        }

        /** The longest gap between SDK reconnect attempts. Default 30 s. */
        public Options maxReconnectGapInSeconds(int v) {
            maxReconnectGapInSeconds = v;
            return this;
        }

        /** At most one typing whisper per matter per this interval. Default 3 s. */
        public Options typingThrottleMillis(long v) {
            typingThrottleMillis = v;
            return this;
        }

        /** A remote typist who sent nothing for this long has stopped. Default 5 s. */
        public Options typingTimeoutMillis(long v) {
            typingTimeoutMillis = v;
            return this;
        }

        /** Messages per catch-up request (1-100). Default 100. */
        public Options catchUpPageSize(int v) {
            catchUpPageSize = v;
            return this;
        }

        /** Catch-up requests per matter and reconnect before giving up with complete=false. Default 10. */
        public Options maxCatchUpPages(int v) {
            maxCatchUpPages = v;
            return this;
        }

        /** Extra attempts of a send that got no answer or 503, with the same client_message_id. Default 2. */
        public Options sendRetries(int v) {
            sendRetries = v;
            return this;
        }

        /** Connect and read timeout of REST calls. Default 15 s. */
        public Options httpTimeoutMillis(int v) {
            httpTimeoutMillis = v;
            return this;
        }

        /** Where listener callbacks run, one at a time; default a background thread of this client. */
        public Options callbackExecutor(Executor v) {
            callbackExecutor = v;
            return this;
        }
    }

    private interface Call {
        void on(Listener l);
    }

    private final Options opts;
    private final String apiBase;
    private final Pusher pusher;
    private final List<Listener> listeners = new CopyOnWriteArrayList<>();
    private final ExecutorService ownCallbacks;
    private final Executor callbacks;
    /** REST work the client does by itself (catch-up, baselines), off the SDK's event thread. */
    private final ExecutorService io;
    private final ScheduledExecutorService timers;

    /** Keys of what was delivered already ("m:42", "u:42:time", ...), oldest dropped past SEEN_CAPACITY. */
    private final Map<String, Boolean> seen = new LinkedHashMap<String, Boolean>(256, 0.75f, false) {
        private static final long serialVersionUID = 1L;

        @Override
        protected boolean removeEldestEntry(Map.Entry<String, Boolean> eldest) {
            return size() > SEEN_CAPACITY;
        }
    };
    /** Matter id → the highest message id delivered: where a catch-up starts. */
    private final Map<Long, Long> lastSeen = new ConcurrentHashMap<>();
    private final Set<Long> matters = ConcurrentHashMap.newKeySet();
    private final Set<Long> presence = ConcurrentHashMap.newKeySet();
    private final Map<Long, Long> lastTypingSent = new ConcurrentHashMap<>();
    private final Map<String, ScheduledFuture<?>> remoteTyping = new HashMap<>();
    private volatile boolean userChannel;
    private volatile boolean closed;

    public RealtimeChat(Options options) {
        List<String> missing = new ArrayList<>();
        if (options == null) {
            throw new IllegalArgumentException("RealtimeChat: options are required");
        }
        if (blank(options.wsHost)) {
            missing.add("wsHost");
        }
        if (blank(options.appKey)) {
            missing.add("appKey");
        }
        if (blank(options.authToken)) {
            missing.add("authToken");
        }
        if (options.userId <= 0) {
            missing.add("userId");
        }
        if (blank(options.apiBaseUrl)) {
            missing.add("apiBaseUrl");
        }
        if (!missing.isEmpty()) {
            StringBuilder b = new StringBuilder("RealtimeChat: missing options:");
            for (String m : missing) {
                b.append(' ').append(m);
            }
            throw new IllegalArgumentException(b.toString());
        }
        if (options.catchUpPageSize < 1 || options.catchUpPageSize > 100) {
            throw new IllegalArgumentException("RealtimeChat: catchUpPageSize must be 1-100");
        }
        this.opts = options;
        this.apiBase = options.apiBaseUrl.replaceAll("/+$", "");

        ownCallbacks = options.callbackExecutor == null ? Executors.newSingleThreadExecutor(daemon("parley-chat-callbacks")) : null;
        callbacks = options.callbackExecutor != null ? options.callbackExecutor : ownCallbacks;
        io = Executors.newSingleThreadExecutor(daemon("parley-chat-io"));
        timers = Executors.newSingleThreadScheduledExecutor(daemon("parley-chat-timers"));

        HttpChannelAuthorizer authorizer = new HttpChannelAuthorizer(
            blank(options.authEndpoint) ? apiBase + "/broadcasting/auth" : options.authEndpoint);
        Map<String, String> headers = new HashMap<>();
        headers.put("Authorization", "Bearer " + options.authToken);
        headers.put("Accept", "application/json");
        authorizer.setHeaders(headers);

        PusherOptions po = new PusherOptions()
            .setHost(options.wsHost)
            .setWsPort(options.wsPort)
            .setWssPort(options.wssPort)
            .setUseTLS(options.useTLS)
            .setChannelAuthorizer(authorizer)
            .setActivityTimeout(options.activityTimeoutMillis)
            .setPongTimeout(options.pongTimeoutMillis)
            .setMaxReconnectionAttempts(options.maxReconnectionAttempts)
            .setMaxReconnectGapInSeconds(options.maxReconnectGapInSeconds);
        pusher = new Pusher(options.appKey, po);
    }

    private static boolean blank(String s) {
        return s == null || s.trim().isEmpty();
    }

    private static ThreadFactory daemon(final String name) {
        return r -> {
            Thread t = new Thread(r, name);
            t.setDaemon(true);
            return t;
        };
    }

    // ------------------------------------------------------------------ listeners, connection

    public void addListener(Listener l) {
        listeners.add(l);
    }

    public void removeListener(Listener l) {
        listeners.remove(l);
    }

    private void dispatch(final Call call) {
        if (closed) {
            return;
        }
        try {
            callbacks.execute(() -> {
                for (Listener l : listeners) {
                    try {
                        call.on(l);
                    } catch (RuntimeException e) {
                        // A listener's bug must not stop the others or the client.
                        e.printStackTrace();
                    }
                }
            });
        } catch (RuntimeException rejected) {
            // The executor was shut down: the client is closing.
        }
    }

    private final ConnectionEventListener connectionListener = new ConnectionEventListener() {
        @Override
        public void onConnectionStateChange(ConnectionStateChange change) {
            final ConnectionState prev = change.getPreviousState();
            final ConnectionState cur = change.getCurrentState();
            dispatch(l -> l.onConnectionStateChange(prev, cur));
        }

        @Override
        public void onError(String message, String code, Exception e) {
            dispatch(l -> l.onError(message, code, e));
        }
    };

    /** Connects (the subscribe methods do it too). Idempotent while connected or connecting. */
    public void connect() {
        ConnectionState s = pusher.getConnection().getState();
        if (s == ConnectionState.DISCONNECTED || s == ConnectionState.DISCONNECTING) {
            pusher.connect(connectionListener, ConnectionState.ALL);
        }
    }

    /** Disconnects; {@link #connect()} or a subscribe reconnects (and catches up). */
    public void disconnect() {
        pusher.disconnect();
    }

    /** Disconnects for good and stops this client's threads. */
    @Override
    public void close() {
        disconnect();
        closed = true;
        io.shutdownNow();
        timers.shutdownNow();
        if (ownCallbacks != null) {
            ownCallbacks.shutdown();
        }
    }

    public ConnectionState getConnectionState() {
        return pusher.getConnection().getState();
    }

    /** The socket id while connected, else null. */
    public String getSocketId() {
        return pusher.getConnection().getState() == ConnectionState.CONNECTED ? pusher.getConnection().getSocketId() : null;
    }

    /** The underlying Pusher client, for anything this class does not cover. */
    public Pusher getPusher() {
        return pusher;
    }

    // ------------------------------------------------------------------ channels

    public static String userChannelName(long userId) {
        return "private-user." + userId;
    }

    public static String matterChannelName(long matterId) {
        return "private-matter." + matterId;
    }

    private String[] events(String[] names, String... extra) {
        String[] out = new String[names.length + extra.length];
        for (int i = 0; i < names.length; i++) {
            out[i] = opts.eventNamespace + names[i];
        }
        System.arraycopy(extra, 0, out, names.length, extra.length);
        return out;
    }

    /** Subscribes to {@code private-user.{userId}}: new messages of every matter, receipts, unread counts. */
    public synchronized void subscribeToUserChannel() {
        if (userChannel) {
            return;
        }
        userChannel = true;
        pusher.subscribePrivate(userChannelName(opts.userId), new ChannelListener(0), events(USER_EVENTS));
        connect();
    }

    /** Subscribes to {@code private-matter.{id}}: its messages, receipts and typing whispers. */
    public synchronized void subscribeToMatterChannel(long matterId) {
        if (!matters.add(matterId)) {
            return;
        }
        pusher.subscribePrivate(matterChannelName(matterId), new ChannelListener(matterId), events(MATTER_EVENTS, TYPING_EVENT));
        connect();
    }

    public synchronized void unsubscribeFromMatterChannel(long matterId) {
        if (matters.remove(matterId)) {
            pusher.unsubscribe(matterChannelName(matterId));
        }
    }

    public static String presenceChannelName(long matterId) {
        return "presence-matter." + matterId;
    }

    /**
     * Joins {@code presence-matter.{id}} (members only): this user shows as online to the others,
     * and {@link Listener#onPresenceChanged} lists who is online whenever that changes.
     */
    public synchronized void joinMatterPresence(long matterId) {
        if (!presence.add(matterId)) {
            return;
        }
        pusher.subscribePresence(presenceChannelName(matterId), new PresenceListener(matterId));
        connect();
    }

    public synchronized void leaveMatterPresence(long matterId) {
        if (presence.remove(matterId)) {
            pusher.unsubscribe(presenceChannelName(matterId));
        }
    }

    /** Who is online in a joined matter now (empty before the subscription succeeded). */
    public List<Member> getOnlineMembers(long matterId) {
        PresenceChannel ch = presence.contains(matterId) ? pusher.getPresenceChannel(presenceChannelName(matterId)) : null;
        List<Member> out = new ArrayList<>();
        if (ch != null && ch.isSubscribed()) {
            for (User u : ch.getUsers()) {
                out.add(Member.of(u));
            }
        }
        Collections.sort(out, (a, b) -> Long.compare(a.userId, b.userId));
        return out;
    }

    private final class PresenceListener implements PresenceChannelEventListener {
        private final long matterId;

        PresenceListener(long matterId) {
            this.matterId = matterId;
        }

        private void changed() {
            final List<Member> now = getOnlineMembers(matterId);
            dispatch(l -> l.onPresenceChanged(matterId, now));
        }

        @Override
        public void onUsersInformationReceived(String channelName, Set<User> users) {
            changed();
        }

        @Override
        public void userSubscribed(String channelName, User user) {
            changed();
        }

        @Override
        public void userUnsubscribed(String channelName, User user) {
            changed();
        }

        @Override
        public void onSubscriptionSucceeded(String channel) {
            dispatch(l -> l.onSubscribed(channel));
        }

        @Override
        public void onAuthenticationFailure(String message, Exception e) {
            final Exception err = e != null ? e : new IOException(message);
            dispatch(l -> l.onSubscriptionError(presenceChannelName(matterId), err));
        }

        @Override
        public void onEvent(PusherEvent event) {
            // No events are bound on presence channels.
        }
    }

    /** Events of one channel; matterId 0 is the user channel. */
    private final class ChannelListener implements PrivateChannelEventListener {
        private final long matterId;

        ChannelListener(long matterId) {
            this.matterId = matterId;
        }

        @Override
        public void onSubscriptionSucceeded(final String channel) {
            dispatch(l -> l.onSubscribed(channel));
            if (matterId > 0) {
                background(() -> syncMatter(matterId));
            } else {
                background(RealtimeChat.this::syncUser);
            }
        }

        @Override
        public void onAuthenticationFailure(final String message, final Exception e) {
            final String channel = matterId > 0 ? matterChannelName(matterId) : userChannelName(opts.userId);
            final Exception err = e != null ? e : new IOException(message);
            dispatch(l -> l.onSubscriptionError(channel, err));
        }

        @Override
        public void onEvent(PusherEvent event) {
            try {
                handle(matterId, event);
            } catch (RuntimeException e) {
                final String what = "bad " + event.getEventName() + " on " + event.getChannelName();
                dispatch(l -> l.onError(what, null, e));
            }
        }
    }

    private void handle(long channelMatter, PusherEvent event) {
        String name = event.getEventName();
        if (TYPING_EVENT.equals(name)) {
            typingReceived(channelMatter, Json.object(event.getData()));
            return;
        }
        if (!name.startsWith(opts.eventNamespace)) {
            return;
        }
        name = name.substring(opts.eventNamespace.length());
        JsonObject data = Json.object(event.getData());
        switch (name) {
            case "MessageSent": {
                Message m = Message.fromJson(Json.object(data, "message"));
                if (firstSight(m)) {
                    typingEnded(m.clientMatterId, m.senderId);
                    dispatch(l -> l.onMessageReceived(m));
                }
                break;
            }
            case "MessageUpdated": {
                Message m = Message.fromJson(Json.object(data, "message"));
                if (once("u:" + m.id + ":" + m.updatedAt + ":" + m.message)) {
                    dispatch(l -> l.onMessageUpdated(m));
                }
                break;
            }
            case "MessageDeleted": {
                Message m = Message.fromJson(Json.object(data, "message"));
                if (once("d:" + m.id)) {
                    dispatch(l -> l.onMessageDeleted(m));
                }
                break;
            }
            case "MessageReceived": {
                ReadReceipt r = ReadReceipt.fromJson(data);
                if (once("r:" + r.messageId + ":" + r.readerId)) {
                    dispatch(l -> l.onMessageRead(r));
                }
                break;
            }
            case "MessagesRead": {
                MessagesRead r = MessagesRead.fromJson(data);
                if (once("ru:" + r.clientMatterId + ":" + r.readerId + ":" + r.upToId + ":" + r.readAt)) {
                    dispatch(l -> l.onMessagesRead(r));
                }
                break;
            }
            case "UnreadCountUpdated": {
                UnreadCounts c = UnreadCounts.fromJson(data);
                dispatch(l -> l.onUnreadCountUpdated(c));
                break;
            }
            default:
                break;
        }
    }

    private boolean once(String key) {
        synchronized (seen) {
            return seen.put(key, Boolean.TRUE) == null;
        }
    }

    /** Records a message; true the first time it is seen. Advances the matter's catch-up cursor. */
    private boolean firstSight(Message m) {
        lastSeen.merge(m.clientMatterId, m.id, Math::max);
        return once("m:" + m.id);
    }

    // ------------------------------------------------------------------ catch-up

    private void background(Runnable r) {
        try {
            io.execute(r);
        } catch (RuntimeException rejected) {
            // closing
        }
    }

    /**
     * After a matter channel is subscribed (first time or again): deliver what was sent since
     * the last message seen; the first time, with nothing seen yet, only learn where to start.
     */
    private void syncMatter(long matterId) {
        try {
            if (lastSeen.containsKey(matterId)) {
                catchUp(matterId);
            } else {
                List<Message> newest = get("/messages?client_matter_id=" + matterId + "&limit=1");
                lastSeen.merge(matterId, newest.isEmpty() ? 0L : newest.get(0).id, Math::max);
            }
        } catch (IOException | RuntimeException e) {
            dispatch(l -> l.onError("catch-up of matter " + matterId + " failed: " + e.getMessage(), null, e));
        }
    }

    /**
     * After the user channel is subscribed: catch up every known matter whose own channel is
     * not subscribed (those catch up by themselves), learn the newest message of the others
     * when the server lists it, and refresh the unread counts (changes while away are lost).
     */
    private void syncUser() {
        try {
            JsonObject ms = Json.object(request("GET", "/matters", null));
            JsonElement data = ms.get("data");
            if (data != null && data.isJsonArray()) {
                for (JsonElement e : data.getAsJsonArray()) {
                    JsonObject last = e.isJsonObject() ? Json.object(e.getAsJsonObject(), "last_message") : null;
                    long id = Json.number(e.getAsJsonObject(), "id");
                    if (last != null && id > 0 && !lastSeen.containsKey(id) && !matters.contains(id)) {
                        lastSeen.put(id, Json.number(last, "id"));
                        // Its newest message is known from here on, but not delivered: it is history.
                    }
                }
            }
            for (Long matterId : new ArrayList<>(lastSeen.keySet())) {
                if (!matters.contains(matterId)) {
                    catchUp(matterId);
                }
            }
            UnreadCounts counts = getUnreadCount();
            dispatch(l -> l.onUnreadCountUpdated(counts));
        } catch (IOException | RuntimeException e) {
            dispatch(l -> l.onError("catch-up after subscribing to the user channel failed: " + e.getMessage(), null, e));
        }
    }

    /**
     * Delivers what matter {@code matterId} got after the last message seen, oldest first. The
     * cursor is the last message of each page, not {@link #lastSeen}: a live event arriving
     * meanwhile moves that ahead, and the messages in between must still be fetched.
     */
    private void catchUp(long matterId) throws IOException {
        final int size = opts.catchUpPageSize;
        final String base = "/messages?client_matter_id=" + matterId + "&limit=" + size;
        int count = 0;
        boolean complete = false;
        long after = lastSeen.getOrDefault(matterId, 0L);
        if (after > 0) {
            for (int page = 0; page < opts.maxCatchUpPages; page++) {
                List<Message> batch = get(base + "&after_id=" + after);
                count += deliver(batch);
                if (batch.size() < size) {
                    complete = true;
                    break;
                }
                after = batch.get(batch.size() - 1).id;
            }
        } else {
            // The matter was empty when this client began following it: everything in it is
            // new. after_id starts at 1, so page back from the newest and deliver oldest first.
            List<Message> all = new ArrayList<>();
            String q = base;
            for (int page = 0; page < opts.maxCatchUpPages; page++) {
                List<Message> batch = get(q);
                all.addAll(batch);
                if (batch.size() < size) {
                    complete = true;
                    break;
                }
                q = base + "&before_id=" + batch.get(batch.size() - 1).id;
            }
            Collections.reverse(all);
            count += deliver(all);
        }
        final int n = count;
        final boolean done = complete;
        dispatch(l -> l.onCaughtUp(matterId, n, done));
    }

    private int deliver(List<Message> batch) {
        int n = 0;
        for (Message m : batch) {
            if (firstSight(m)) {
                n++;
                typingEnded(m.clientMatterId, m.senderId);
                dispatch(l -> l.onMessageReceived(m));
            }
        }
        return n;
    }

    // ------------------------------------------------------------------ typing

    /**
     * Tells the matter's other members this user is typing: a {@code client-typing} whisper
     * {@code {"user_id", "name", "typing": true}} on {@code private-matter.{id}}, at most once per
     * {@link Options#typingThrottleMillis}. Call it on every keystroke. False when nothing was sent
     * (throttled, or the matter channel is not subscribed and connected).
     */
    public boolean sendTyping(long matterId) {
        long now = System.currentTimeMillis();
        Long last = lastTypingSent.get(matterId);
        if (last != null && now - last < opts.typingThrottleMillis) {
            return false;
        }
        if (!whisper(matterId, true)) {
            return false;
        }
        lastTypingSent.put(matterId, now);
        return true;
    }

    /** Tells the others this user stopped typing (sent at once, never throttled). */
    public boolean stopTyping(long matterId) {
        lastTypingSent.remove(matterId);
        return whisper(matterId, false);
    }

    private boolean whisper(long matterId, boolean typing) {
        PrivateChannel ch = pusher.getPrivateChannel(matterChannelName(matterId));
        if (ch == null || !ch.isSubscribed() || pusher.getConnection().getState() != ConnectionState.CONNECTED) {
            return false;
        }
        JsonObject d = new JsonObject();
        d.addProperty("user_id", opts.userId);
        if (opts.userName != null) {
            d.addProperty("name", opts.userName);
        }
        d.addProperty("typing", typing);
        try {
            ch.trigger(TYPING_EVENT, d.toString());
            return true;
        } catch (IllegalStateException e) {
            return false; // the channel or connection went down in between
        }
    }

    private void typingReceived(long matterId, JsonObject d) {
        long userId = Json.number(d, "user_id");
        if (userId <= 0 || userId == opts.userId || matterId <= 0) {
            return;
        }
        Boolean typing = Json.bool(d, "typing");
        String name = Json.string(d, "name");
        if (typing != null && !typing) {
            typingEnded(matterId, userId);
            return;
        }
        String key = matterId + ":" + userId;
        synchronized (remoteTyping) {
            ScheduledFuture<?> old = remoteTyping.remove(key);
            if (old != null) {
                old.cancel(false);
            }
            try {
                remoteTyping.put(key, timers.schedule(() -> typingEnded(matterId, userId),
                    opts.typingTimeoutMillis, TimeUnit.MILLISECONDS));
            } catch (RuntimeException rejected) {
                return; // closing
            }
        }
        // Every whisper is passed on (each renews the indicator); the end is reported once.
        dispatch(l -> l.onTyping(new TypingEvent(matterId, userId, name, true)));
    }

    private void typingEnded(long matterId, long userId) {
        ScheduledFuture<?> f;
        synchronized (remoteTyping) {
            f = remoteTyping.remove(matterId + ":" + userId);
        }
        if (f != null) {
            f.cancel(false);
            dispatch(l -> l.onTyping(new TypingEvent(matterId, userId, null, false)));
        }
    }

    // ------------------------------------------------------------------ REST

    /**
     * Sends a message ({@code POST /api/messages/send}) with a fresh {@code client_message_id}.
     * Blocks until the server stored it; then {@link Listener#onMessageSent} runs.
     */
    public Message sendMessage(String message, long matterId) throws IOException {
        return sendMessage(message, matterId, UUID.randomUUID().toString());
    }

    /**
     * Sends with the caller's idempotency key: a server that knows {@code client_message_id}
     * answers a repeat with the message it stored the first time, so a send whose answer was
     * lost can be repeated safely. Without an answer (or on 503) the send is repeated up to
     * {@link Options#sendRetries} times with the same key.
     */
    public Message sendMessage(String message, long matterId, String clientMessageId) throws IOException {
        JsonObject body = new JsonObject();
        body.addProperty("message", message);
        body.addProperty("client_matter_id", matterId);
        body.addProperty("client_message_id", clientMessageId);
        IOException failure = null;
        for (int attempt = 0; attempt <= Math.max(0, opts.sendRetries); attempt++) {
            if (attempt > 0) {
                sleepQuietly(Math.min(4000L, 500L << (attempt - 1)));
            }
            try {
                Message m = Message.fromJson(Json.object(Json.object(request("POST", "/messages/send", body)), "data"));
                firstSight(m);
                dispatch(l -> l.onMessageSent(m));
                return m;
            } catch (ApiException e) {
                if (e.status != 503) {
                    throw e;
                }
                failure = e;
            } catch (IOException e) {
                failure = e;
            }
        }
        throw failure;
    }

    /** Marks one message read ({@code PUT /api/messages/{id}/read}); the sender gets onMessageRead. */
    public ReadReceipt markAsRead(long messageId) throws IOException {
        return ReadReceipt.fromJson(Json.object(Json.object(request("PUT", "/messages/" + messageId + "/read", null)), "data"));
    }

    /** Marks every message of the matter up to {@code upToId} read, in one request ({@code PUT /api/matters/{id}/read}). */
    public MessagesRead markMatterRead(long matterId, long upToId) throws IOException {
        JsonObject body = new JsonObject();
        body.addProperty("up_to_id", upToId);
        return MessagesRead.fromJson(Json.object(Json.object(request("PUT", "/matters/" + matterId + "/read", body)), "data"));
    }

    /** Edits the caller's own message ({@code PUT /api/messages/{id}}). */
    public Message editMessage(long messageId, String message) throws IOException {
        JsonObject body = new JsonObject();
        body.addProperty("message", message);
        Message m = Message.fromJson(Json.object(Json.object(request("PUT", "/messages/" + messageId, body)), "data"));
        once("u:" + m.id + ":" + m.updatedAt + ":" + m.message);
        return m;
    }

    /**
     * Deletes the caller's own message ({@code DELETE /api/messages/{id}}): a soft delete, the
     * message stays in the history with {@code deletedAt} set and an empty text. Deleting it again
     * answers the same. Other members get {@code MessageDeleted}.
     */
    public Message deleteMessage(long messageId) throws IOException {
        Message m = Message.fromJson(Json.object(Json.object(request("DELETE", "/messages/" + messageId, null)), "data"));
        once("d:" + m.id);
        return m;
    }

    /** {@code GET /api/messages/unread-count}. */
    public UnreadCounts getUnreadCount() throws IOException {
        return UnreadCounts.fromJson(Json.object(request("GET", "/messages/unread-count", null)));
    }

    /**
     * A page of history, newest first ({@code page} from 1, {@code limit} 1-100). The messages
     * count as delivered: a later catch-up does not report them again.
     */
    public List<Message> fetchMessages(long matterId, int page, int limit) throws IOException {
        return remember(get("/messages?client_matter_id=" + matterId + "&page=" + page + "&limit=" + limit));
    }

    /** The messages before {@code beforeId}, newest first (scrolling back). */
    public List<Message> fetchMessagesBefore(long matterId, long beforeId, int limit) throws IOException {
        return remember(get("/messages?client_matter_id=" + matterId + "&before_id=" + beforeId + "&limit=" + limit));
    }

    /** The messages after {@code afterId} (1 or more), oldest first: what a client that was away missed. */
    public List<Message> fetchMessagesAfter(long matterId, long afterId, int limit) throws IOException {
        if (afterId < 1) {
            throw new IllegalArgumentException("afterId must be at least 1");
        }
        return remember(get("/messages?client_matter_id=" + matterId + "&after_id=" + afterId + "&limit=" + limit));
    }

    private List<Message> remember(List<Message> list) {
        for (Message m : list) {
            firstSight(m);
        }
        return list;
    }

    private List<Message> get(String pathAndQuery) throws IOException {
        JsonObject page = Json.object(request("GET", pathAndQuery, null));
        JsonElement data = page.get("data");
        if (data == null || !data.isJsonArray()) {
            throw new IOException("GET " + pathAndQuery + ": no data list in " + Json.abbreviate(page.toString()));
        }
        JsonArray a = data.getAsJsonArray();
        List<Message> out = new ArrayList<>(a.size());
        for (JsonElement e : a) {
            out.add(Message.fromJson(e.getAsJsonObject()));
        }
        return out;
    }

    /**
     * One REST call; the answer's body on 2xx, {@link ApiException} on an error status, a plain
     * IOException when there was no answer. {@code X-Socket-ID} leaves this client's own socket
     * out of the events the call causes (Laravel's toOthers()).
     */
    private String request(String method, String pathAndQuery, JsonObject body) throws IOException {
        String url = apiBase + pathAndQuery;
        HttpURLConnection c = (HttpURLConnection) new URL(url).openConnection();
        try {
            c.setRequestMethod(method);
            c.setConnectTimeout(opts.httpTimeoutMillis);
            c.setReadTimeout(opts.httpTimeoutMillis);
            c.setUseCaches(false);
            c.setRequestProperty("Accept", "application/json");
            c.setRequestProperty("Authorization", "Bearer " + opts.authToken);
            String socketId = getSocketId();
            if (socketId != null) {
                c.setRequestProperty("X-Socket-ID", socketId);
            }
            if (body != null) {
                byte[] bytes = body.toString().getBytes(StandardCharsets.UTF_8);
                c.setDoOutput(true);
                c.setRequestProperty("Content-Type", "application/json; charset=utf-8");
                c.setFixedLengthStreamingMode(bytes.length);
                try (OutputStream out = c.getOutputStream()) {
                    out.write(bytes);
                }
            }
            int status = c.getResponseCode();
            InputStream in = status >= 400 ? c.getErrorStream() : c.getInputStream();
            String text = readAll(in);
            if (status >= 200 && status < 300) {
                return text;
            }
            throw new ApiException(method, url, status, text, c.getHeaderField("Retry-After"));
        } finally {
            c.disconnect();
        }
    }

    private static String readAll(InputStream in) throws IOException {
        if (in == null) {
            return "";
        }
        try (InputStream s = in) {
            ByteArrayOutputStream buf = new ByteArrayOutputStream();
            byte[] b = new byte[8192];
            int n;
            while ((n = s.read(b)) != -1) {
                buf.write(b, 0, n);
            }
            return new String(buf.toByteArray(), StandardCharsets.UTF_8);
        }
    }

    private static void sleepQuietly(long ms) throws IOException {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
    }
}
