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
import java.util.TreeMap;
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
 * <p>Delivery: every message of a followed matter (subscribed with
 * {@link #subscribeToMatterChannel}, or any matter of the user with
 * {@link #subscribeToUserChannel}) reaches {@link Listener#onMessageReceived} once and in id
 * order. Each followed matter has a position from the moment it is followed (its newest
 * message then): a live {@code MessageSent} carries {@code previous_id}, the message before it;
 * when that is the position it is delivered, when it is higher the client first fetches
 * {@code GET /api/messages?client_matter_id=&after_id={position}}. The SDK reconnects by itself
 * and subscribes again; every (re)subscription catches up the same way, so nothing sent while
 * the socket was down or the server restarted is missed. This client's own sends reach
 * {@link Listener#onMessageSent} instead, once — also one a catch-up brings before
 * {@code sendMessage} has its answer (then in its place in id order). Read marks never cover
 * what the app was not shown: {@link #markMatterRead} is lowered to {@link #shownUpTo},
 * {@link #markAsRead} of a message not shown throws {@link NotShownException}; shown means the
 * message's callback ran (not merely queued on {@link Options#callbackExecutor}), or a fetch
 * method or {@code sendMessage} returned it.
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
    /** Own sends remembered by client_message_id after they ended (a repeat of a failed one may follow). */
    private static final int OWN_SENDS_KEPT = 1000;

    /** What the application hears. Every method has an empty default: override what you need. */
    public interface Listener {
        /**
         * Each message of a followed matter once, in id order per matter: live, or from a
         * catch-up; from anyone (also yourself on another device), never this client's own sends.
         */
        default void onMessageReceived(Message message) {}

        /**
         * A message this client sent, once the server stored it: once per send, when the answer
         * comes, or earlier, in id order, when a catch-up brings it first (also after a send that
         * threw); then the answer, or a repeat with the same key, calls nothing more.
         */
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
         * when it stopped after {@link Options#maxCatchUpPages} pages; the next one follows by itself.
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

        /** Catch-up requests per run (onCaughtUp with complete=false after them; the next run goes on). Default 10. */
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

        /**
         * Where listener callbacks run, one at a time, in order (a serial executor, e.g. the main
         * thread's); default a background thread of this client. A message counts as shown (for
         * markAsRead and shownUpTo) once its callback ran, not while it waits here.
         */
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
    /** Guards the chains (each followed matter's delivery state). */
    private final Object lock = new Object();
    private final Map<Long, Chain> chains = new HashMap<>();
    /**
     * Message id → matter id of what the app was given: a callback that had it ran (onMessageReceived,
     * onMessageSent), or a fetch method or sendMessage returned it. markAsRead's test.
     */
    private final Map<Long, Long> shown = new LinkedHashMap<Long, Long>(256, 0.75f, false) {
        private static final long serialVersionUID = 1L;

        @Override
        protected boolean removeEldestEntry(Map.Entry<Long, Long> eldest) {
            return size() > 5 * SEEN_CAPACITY;
        }
    };
    /** This client's sends by client_message_id, in flight or recently failed (guarded by `lock`). */
    private final Map<String, OwnSend> ownSends = new LinkedHashMap<String, OwnSend>(16, 0.75f, false) {
        private static final long serialVersionUID = 1L;

        @Override
        protected boolean removeEldestEntry(Map.Entry<String, OwnSend> eldest) {
            return size() > OWN_SENDS_KEPT && eldest.getValue().inFlight == 0;
        }
    };
    /** The message whose callback runs on this thread now (it counts as shown for calls made from it). */
    private final ThreadLocal<Message> inCallback = new ThreadLocal<>();
    private volatile boolean userBaseKnown;
    private volatile long userRetryMillis;
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
            callbacks.execute(() -> callListeners(call));
        } catch (RuntimeException rejected) {
            // The executor was shut down: the client is closing.
        }
    }

    private void callListeners(Call call) {
        for (Listener l : listeners) {
            try {
                call.on(l);
            } catch (RuntimeException e) {
                // A listener's bug must not stop the others or the client.
                e.printStackTrace();
            }
        }
    }

    /**
     * Gives a message to the listeners (onMessageReceived or onMessageSent); once they returned it
     * counts as shown (markAsRead, and the chain's shown position). While they run it counts as
     * shown only for calls made on this thread, from the callback itself.
     */
    private void dispatchMessage(final Chain c, final Message m, final Call call) {
        if (closed) {
            return;
        }
        try {
            callbacks.execute(() -> {
                Message outer = inCallback.get();
                inCallback.set(m);
                try {
                    callListeners(call);
                } finally {
                    if (outer == null) {
                        inCallback.remove();
                    } else {
                        inCallback.set(outer);
                    }
                    shownNow(c, m);
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

    /**
     * Subscribes to {@code private-user.{userId}}: new messages of every matter, receipts, unread
     * counts. Every matter of the user is followed from now on: its position is its newest
     * message in {@code GET /api/matters} (read now), and after every (re)subscription the
     * matters whose newest message is past their position are caught up.
     */
    public synchronized void subscribeToUserChannel() {
        if (userChannel) {
            return;
        }
        userChannel = true;
        background(() -> syncUser(false));
        pusher.subscribePrivate(userChannelName(opts.userId), new ChannelListener(0), events(USER_EVENTS));
        connect();
    }

    /**
     * Subscribes to {@code private-matter.{id}}: its messages, receipts and typing whispers. The
     * matter is followed from now on: its position is its newest message, fetched now unless
     * known already (a fetch method, the user channel); everything after it is delivered.
     */
    public synchronized void subscribeToMatterChannel(long matterId) {
        if (!matters.add(matterId)) {
            return;
        }
        final Chain c;
        synchronized (lock) {
            c = chain(matterId);
            c.matterChannel = true;
        }
        background(() -> {
            try {
                fetchBase(c);
            } catch (IOException | RuntimeException e) {
                failed(c, "the position of matter " + matterId + " could not be fetched: ", e);
            }
        });
        pusher.subscribePrivate(matterChannelName(matterId), new ChannelListener(matterId), events(MATTER_EVENTS, TYPING_EVENT));
        connect();
    }

    public synchronized void unsubscribeFromMatterChannel(long matterId) {
        if (matters.remove(matterId)) {
            pusher.unsubscribe(matterChannelName(matterId));
            synchronized (lock) {
                Chain c = chains.get(matterId);
                if (c != null) {
                    c.matterChannel = false;
                    if (!userChannel) {
                        // No longer followed: a later subscribe starts from its newest message again.
                        chains.remove(matterId);
                    }
                }
            }
        }
    }

    /**
     * The newest message id up to which the app has been given everything of a followed matter —
     * what {@link #markMatterRead} may mark. Given means: its onMessageReceived or onMessageSent
     * ran (returned), a fetch method or sendMessage returned it, or it was there when the matter
     * was first followed. A message the client has taken in but whose callback still waits on
     * {@link Options#callbackExecutor} is not given yet. Null while unknown.
     */
    public Long shownUpTo(long matterId) {
        synchronized (lock) {
            Chain c = chains.get(matterId);
            if (c == null || c.position == null) {
                return null;
            }
            long upTo = c.position;
            Message current = inCallback.get();
            for (Map.Entry<Long, Long> e : c.unshown.entrySet()) {
                if (current == null || current.id != e.getKey()) {
                    upTo = Math.min(upTo, e.getValue());
                }
            }
            return upTo;
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
                // What came after the position: it runs once the channel delivers again, so a
                // message is either live or fetched, never neither.
                Chain c;
                synchronized (lock) {
                    c = chains.get(matterId);
                }
                if (c != null) {
                    queueCatchUp(c);
                }
            } else {
                // A new socket starts in the foreground: say so again if the app is not.
                if (appBackground) {
                    sendAppState();
                }
                background(() -> syncUser(true));
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
                live(Message.fromJson(Json.object(data, "message")));
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

    private void markShown(Message m) {
        synchronized (shown) {
            shown.put(m.id, m.clientMatterId);
        }
    }

    private boolean wasShown(long messageId) {
        Message current = inCallback.get();
        if (current != null && current.id == messageId) {
            return true; // asked from the message's own callback
        }
        synchronized (shown) {
            return shown.containsKey(messageId);
        }
    }

    /** The app has been given m (its callback returned, or a method returned it). */
    private void shownNow(Chain c, Message m) {
        synchronized (lock) {
            markShown(m);
            if (c != null) {
                c.unshown.remove(m.id);
            }
            Chain now = chains.get(m.clientMatterId);
            if (now != null && now != c) {
                now.unshown.remove(m.id);
            }
        }
    }

    /** This client's send in flight (or failed lately) that m is the stored form of, if any. Under lock. */
    private OwnSend ownSendOf(Message m) {
        if (m.clientMessageId == null || m.senderId != opts.userId) {
            return null;
        }
        OwnSend s = ownSends.get(m.clientMessageId);
        return s != null && s.matterId == m.clientMatterId ? s : null;
    }

    // ------------------------------------------------------------------ delivery
    //
    // Each followed matter has a Chain: position is the newest id up to which the client has
    // everything (delivered to the callback queue, fetched by the app, sent by this client, or
    // there before the matter was followed); null until known. Live messages and own sends wait in
    // pending until the message before them (previousId) is at the position; a hole is fetched
    // with after_id={position} (message ids commit in order within a matter, so after_id never
    // skips a late commit). What the app was shown trails the position while callbacks wait on
    // the callback executor: `unshown` holds those messages, and shownUpTo stays below them.
    // Chain state is guarded by `lock`; listener calls are queued under it, so they keep its order.

    private static final class Pending {
        final Message message;
        final boolean own;

        Pending(Message message, boolean own) {
            this.message = message;
            this.own = own;
        }
    }

    /** One of this client's sends, by client_message_id. Guarded by `lock`. */
    private static final class OwnSend {
        final long matterId;
        /** sendMessage calls running with this key. */
        int inFlight;
        /** onMessageSent was dispatched for it (by the answer, or by a catch-up or the socket before it). */
        boolean sentDispatched;

        OwnSend(long matterId) {
            this.matterId = matterId;
        }
    }

    private static final class Chain {
        final long id;
        /** Delivery position: the newest id up to which messages were handed to the callback queue (or known). */
        Long position;
        /**
         * Messages past which the position moved but that the app has not been given yet (their
         * callback waits, or sendMessage has not returned them), each with the position before it:
         * the shown position (shownUpTo) stays below the first of them.
         */
        final TreeMap<Long, Long> unshown = new TreeMap<>();
        final TreeMap<Long, Pending> pending = new TreeMap<>();
        boolean matterChannel;
        boolean baseLoading;
        boolean catchUpQueued;
        long retryMillis;
        ScheduledFuture<?> retry;

        Chain(long id) {
            this.id = id;
        }
    }

    private Chain chain(long matterId) {
        synchronized (lock) {
            Chain c = chains.get(matterId);
            if (c == null) {
                c = new Chain(matterId);
                chains.put(matterId, c);
            }
            return c;
        }
    }

    private boolean followed(Chain c) {
        synchronized (lock) {
            return chains.get(c.id) == c && (c.matterChannel || userChannel);
        }
    }

    /**
     * Delivers a message to the listeners, once (by id): onMessageReceived, or onMessageSent when it
     * is one of this client's own sends whose sendMessage has not had its answer (or threw), found
     * by a catch-up or the socket first. {@code c} is its chain (null without one) and {@code prev}
     * the chain's position before it: the shown position stays there until the callback ran.
     */
    private boolean deliver(Chain c, Message m, long prev) {
        synchronized (lock) {
            OwnSend own = ownSendOf(m);
            if (!once("m:" + m.id)) {
                if (c != null && own != null && own.inFlight > 0 && !wasShown(m.id)) {
                    c.unshown.put(m.id, prev); // answered, but sendMessage has not returned it yet
                }
                return false;
            }
            if (c != null) {
                c.unshown.put(m.id, prev);
            }
            if (own != null) {
                own.sentDispatched = true;
                dispatchMessage(c, m, l -> l.onMessageSent(m));
                return true;
            }
            typingEnded(m.clientMatterId, m.senderId);
            dispatchMessage(c, m, l -> l.onMessageReceived(m));
            return true;
        }
    }

    /** The position moved past a pending message: delivered, or an own send that is not. Under lock. */
    private boolean passed(Chain c, Pending p, long prev) {
        if (!p.own) {
            return deliver(c, p.message, prev);
        }
        OwnSend own = ownSendOf(p.message);
        if (own != null && own.inFlight > 0 && !wasShown(p.message.id)) {
            c.unshown.put(p.message.id, prev); // sendMessage has not returned it yet
        }
        return false;
    }

    /** A MessageSent from either channel. */
    private void live(Message m) {
        if (m.previousId == null) {
            deliver(null, m, 0L); // a server without previous_id: delivered as it comes, once
            return;
        }
        synchronized (lock) {
            Chain c = chain(m.clientMatterId);
            if ((c.position != null && m.id <= c.position) || c.pending.containsKey(m.id)) {
                return; // the other channel's copy
            }
            if (c.position == null && !c.baseLoading && !c.matterChannel && userBaseKnown) {
                // A matter the user channel brings that its list did not have (joined since):
                // followed from this message on; what it held before is history.
                setBase(c, m.previousId);
            }
            c.pending.put(m.id, new Pending(m, false));
            drain(c);
        }
    }

    /** One of this client's sends was stored: it continues the chain, but is not delivered. */
    private void ownSent(Message m) {
        if (m.previousId == null) {
            return; // a repeat's answer: a catch-up skips it
        }
        synchronized (lock) {
            Chain c = chains.get(m.clientMatterId);
            if (c == null || (c.position != null && m.id <= c.position) || c.pending.containsKey(m.id)) {
                return;
            }
            c.pending.put(m.id, new Pending(m, true));
            drain(c);
        }
    }

    /** Delivers, in id order, the pending messages that follow the position; catches up on a hole. */
    private void drain(Chain c) {
        synchronized (lock) {
            if (c.position == null) {
                return;
            }
            for (;;) {
                c.pending.headMap(c.position, true).clear();
                Map.Entry<Long, Pending> next = null;
                for (Map.Entry<Long, Pending> e : c.pending.entrySet()) {
                    if (e.getValue().message.previousId <= c.position) {
                        next = e;
                        break;
                    }
                }
                if (next == null) {
                    break;
                }
                c.pending.remove(next.getKey());
                long prev = c.position;
                c.position = next.getKey();
                passed(c, next.getValue(), prev);
            }
            if (!c.pending.isEmpty()) {
                queueCatchUp(c);
            }
        }
    }

    /**
     * The position becomes known. Live messages that came before it came after the
     * subscription: those at or below it are delivered now, in order.
     */
    private void setBase(Chain c, long newest) {
        synchronized (lock) {
            if (c.position != null) {
                return;
            }
            c.position = newest;
            Map<Long, Pending> early = c.pending.headMap(newest, true);
            for (Pending p : early.values()) {
                passed(c, p, p.message.previousId); // shown up to the message before it
            }
            early.clear();
            drain(c);
        }
    }

    /** A newest-first page read by the app: the position if none is known; else it may move it. */
    private void newestRead(long matterId, List<Message> newestFirst, boolean complete) {
        synchronized (lock) {
            Chain c = chain(matterId);
            long top = newestFirst.isEmpty() ? 0 : newestFirst.get(0).id;
            if (c.position == null) {
                setBase(c, top);
                return;
            }
            if (top <= c.position) {
                return;
            }
            if (complete || newestFirst.get(newestFirst.size() - 1).id <= c.position) {
                c.position = top;
                drain(c);
            } else if (followed(c)) {
                queueCatchUp(c); // a hole between the position and the page
            }
        }
    }

    /** An after_id page read by the app (oldest first): everything after afterId up to its last message. */
    private void afterRead(long matterId, long afterId, List<Message> oldestFirst, boolean complete) {
        synchronized (lock) {
            Chain c = chain(matterId);
            long last = oldestFirst.isEmpty() ? afterId : oldestFirst.get(oldestFirst.size() - 1).id;
            if (c.position == null) {
                if (complete) {
                    setBase(c, last);
                }
                return;
            }
            if (afterId <= c.position && last > c.position) {
                c.position = last;
                drain(c);
            }
        }
    }

    // ------------------------------------------------------------------ catch-up

    private void background(Runnable r) {
        try {
            io.execute(r);
        } catch (RuntimeException rejected) {
            // closing
        }
    }

    /** Queues a catch-up of the chain on the io thread (at most one waits per matter). */
    private void queueCatchUp(final Chain c) {
        synchronized (lock) {
            if (c.catchUpQueued) {
                return;
            }
            c.catchUpQueued = true;
        }
        background(() -> {
            synchronized (lock) {
                c.catchUpQueued = false;
            }
            catchUpQuietly(c);
        });
    }

    private void catchUpQuietly(Chain c) {
        if (!followed(c)) {
            return;
        }
        try {
            catchUp(c);
            synchronized (lock) {
                c.retryMillis = 0;
            }
        } catch (IOException | RuntimeException e) {
            failed(c, "catch-up of matter " + c.id + " failed: ", e);
        }
    }

    /**
     * A fetch of the chain failed: reported, and tried again later — unless the server refused
     * it for good (a 4xx other than 408 and 429). 403 and 404 (not a member, no such matter) are
     * not reported here: the channel's refusal reports them (onSubscriptionError).
     */
    private void failed(Chain c, String what, Exception e) {
        int status = e instanceof ApiException ? ((ApiException) e).status : 0;
        boolean permanent = status >= 400 && status < 500 && status != 408 && status != 429;
        if (status != 403 && status != 404) {
            dispatch(l -> l.onError(what + e.getMessage(), null, e));
        }
        if (!permanent) {
            retryLater(c);
        }
    }

    /** After a failed fetch: again in 1 s, doubling to 30 s, while the matter is followed. */
    private void retryLater(final Chain c) {
        synchronized (lock) {
            if (closed || !followed(c)) {
                return;
            }
            if (c.retry != null) {
                c.retry.cancel(false);
            }
            c.retryMillis = Math.min(Math.max(1000L, c.retryMillis * 2), 30_000L);
            try {
                c.retry = timers.schedule(() -> queueCatchUp(c), c.retryMillis, TimeUnit.MILLISECONDS);
            } catch (RuntimeException rejected) {
                // closing
            }
        }
    }

    /** The matter's newest message id (0 when empty) as its position, unless one is known. */
    private void fetchBase(Chain c) throws IOException {
        synchronized (lock) {
            if (c.position != null) {
                return;
            }
            c.baseLoading = true;
        }
        try {
            List<Message> newest = get("/messages?client_matter_id=" + c.id + "&page=1&limit=1");
            long top = newest.isEmpty() ? 0L : newest.get(0).id;
            synchronized (lock) {
                // Not shown to the app: the position only if none came meanwhile.
                if (c.position == null) {
                    setBase(c, top);
                } else if (top > c.position) {
                    queueCatchUp(c);
                }
            }
        } finally {
            synchronized (lock) {
                c.baseLoading = false;
            }
        }
    }

    /**
     * After the user channel is subscribed (first time or again): every matter of the user is
     * followed. One without a position takes its newest message; those whose newest message is
     * past their position are caught up, one after the other. Then the unread counts are read
     * afresh (changes while away are not replayed).
     */
    private void syncUser(boolean counts) {
        try {
            JsonObject ms = Json.object(request("GET", "/matters", null));
            JsonElement data = ms.get("data");
            List<Chain> behind = new ArrayList<>();
            synchronized (lock) {
                Set<Long> listed = new java.util.HashSet<>();
                if (data != null && data.isJsonArray()) {
                    for (JsonElement e : data.getAsJsonArray()) {
                        if (!e.isJsonObject()) {
                            continue;
                        }
                        long id = Json.number(e.getAsJsonObject(), "id");
                        if (id <= 0) {
                            continue;
                        }
                        JsonObject last = Json.object(e.getAsJsonObject(), "last_message");
                        long newest = last == null ? 0L : Json.number(last, "id");
                        Chain c = chain(id);
                        listed.add(id);
                        if (c.position == null) {
                            setBase(c, newest);
                        } else if (newest > c.position) {
                            behind.add(c);
                        }
                    }
                }
                userBaseKnown = true;
                // Messages of matters the list does not have (joined since) that came before it:
                // followed from the first of them on.
                for (Chain c : new ArrayList<>(chains.values())) {
                    if (c.position == null && !c.baseLoading && !listed.contains(c.id) && !c.pending.isEmpty()) {
                        long base = Long.MAX_VALUE;
                        for (Pending p : c.pending.values()) {
                            base = Math.min(base, p.message.previousId);
                        }
                        setBase(c, base);
                    }
                }
            }
            for (Chain c : behind) {
                catchUpQuietly(c);
            }
            userRetryMillis = 0;
            if (counts) {
                UnreadCounts u = getUnreadCount();
                dispatch(l -> l.onUnreadCountUpdated(u));
            }
        } catch (IOException | RuntimeException e) {
            dispatch(l -> l.onError("catch-up after subscribing to the user channel failed: " + e.getMessage(), null, e));
            if (counts && !closed && userChannel) {
                userRetryMillis = Math.min(Math.max(1000L, userRetryMillis * 2), 30_000L);
                try {
                    timers.schedule(() -> background(() -> syncUser(true)), userRetryMillis, TimeUnit.MILLISECONDS);
                } catch (RuntimeException rejected) {
                    // closing
                }
            }
        }
    }

    /**
     * Delivers what a followed matter got after its position, oldest first, in pages of
     * {@link Options#catchUpPageSize}, at most {@link Options#maxCatchUpPages} per run (the next
     * run continues by itself). Runs on the io thread, one catch-up at a time.
     */
    private void catchUp(Chain c) throws IOException {
        if (!followed(c)) {
            return;
        }
        Long start;
        synchronized (lock) {
            start = c.position;
        }
        if (start == null) {
            fetchBase(c);
            synchronized (lock) {
                start = c.position;
            }
            if (start == null) {
                throw new IOException("the position of matter " + c.id + " is not known");
            }
        }
        final int size = opts.catchUpPageSize;
        final String base = "/messages?client_matter_id=" + c.id + "&limit=" + size;
        Set<Long> before;
        synchronized (lock) {
            before = new java.util.HashSet<>(c.pending.keySet());
        }
        int count = 0;
        boolean complete = false;
        if (start > 0) {
            for (int page = 0; page < opts.maxCatchUpPages; page++) {
                long after;
                synchronized (lock) {
                    after = c.position;
                }
                List<Message> batch = get(base + "&after_id=" + after);
                count += apply(c, batch);
                if (batch.size() < size) {
                    complete = true;
                    break;
                }
            }
        } else {
            // The matter was empty when this client began following it: everything in it is
            // new. after_id starts at 1, so page back from the newest (to the first message,
            // whatever maxCatchUpPages says) and deliver oldest first.
            List<Message> all = new ArrayList<>();
            String q = base;
            for (int page = 0; page < 1000; page++) {
                List<Message> batch = get(q);
                all.addAll(batch);
                if (batch.size() < size) {
                    complete = true;
                    break;
                }
                q = base + "&before_id=" + batch.get(batch.size() - 1).id;
            }
            Collections.reverse(all);
            count += apply(c, all);
        }
        synchronized (lock) {
            if (complete) {
                // What waited before this catch-up was committed before it, so it was fetched;
                // anything still held from then would be a server's inconsistency: let it go.
                for (Long id : new ArrayList<>(c.pending.keySet())) {
                    Pending p = c.pending.get(id);
                    if (before.contains(id) && id > c.position) {
                        c.pending.remove(id);
                        long prev = c.position;
                        c.position = id;
                        if (passed(c, p, prev)) {
                            count++;
                        }
                    }
                }
            } else {
                queueCatchUp(c); // more than maxCatchUpPages pages: the next run goes on
            }
            drain(c);
            final int n = count;
            final boolean done = complete;
            dispatch(l -> l.onCaughtUp(c.id, n, done));
        }
    }

    /** Applies a fetched page (oldest first) to the chain; returns how many were delivered. */
    private int apply(Chain c, List<Message> oldestFirst) {
        int n = 0;
        synchronized (lock) {
            if (chains.get(c.id) != c) {
                return 0; // no longer followed
            }
            for (Message m : oldestFirst) {
                if (m.id <= c.position) {
                    continue; // delivered live meanwhile
                }
                long prev = c.position;
                c.position = m.id;
                Pending p = c.pending.remove(m.id);
                if (p == null) {
                    if (deliver(c, m, prev)) { // not when fetched or sent by this client
                        n++;
                    }
                } else if (passed(c, p, prev)) { // it came live, after the hole
                    n++;
                }
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
     * Blocks until the server stored it; {@link Listener#onMessageSent} runs once for it — when
     * the answer comes, or earlier, in its place in id order, when a catch-up (or the socket)
     * brings the stored message before the answer; then the answer dispatches nothing more.
     */
    public Message sendMessage(String message, long matterId) throws IOException {
        return sendMessage(message, matterId, UUID.randomUUID().toString());
    }

    /**
     * Sends with the caller's idempotency key: a server that knows {@code client_message_id}
     * answers a repeat with the message it stored the first time, so a send whose answer was
     * lost can be repeated safely. Without an answer (or on 503) the send is repeated up to
     * {@link Options#sendRetries} times with the same key. A send that threw may still have been
     * stored: when a catch-up brings it, it comes as onMessageSent (not onMessageReceived), and
     * a repeat with the same key returns it without another onMessageSent.
     */
    public Message sendMessage(String message, long matterId, String clientMessageId) throws IOException {
        JsonObject body = new JsonObject();
        body.addProperty("message", message);
        body.addProperty("client_matter_id", matterId);
        body.addProperty("client_message_id", clientMessageId);
        final OwnSend own;
        synchronized (lock) {
            OwnSend known = ownSends.get(clientMessageId);
            if (known == null || known.matterId != matterId) {
                known = new OwnSend(matterId);
                ownSends.put(clientMessageId, known);
            }
            own = known;
            own.inFlight++;
        }
        try {
            IOException failure = null;
            for (int attempt = 0; attempt <= Math.max(0, opts.sendRetries); attempt++) {
                if (attempt > 0) {
                    sleepQuietly(Math.min(4000L, 500L << (attempt - 1)));
                }
                try {
                    Message m = Message.fromJson(Json.object(Json.object(request("POST", "/messages/send", body)), "data"));
                    boolean dispatched;
                    synchronized (lock) {
                        once("m:" + m.id); // never delivered as received afterwards
                        dispatched = own.sentDispatched; // a catch-up or the socket brought it first
                        own.sentDispatched = true;
                    }
                    ownSent(m); // continues its matter's chain after previous_id, not delivered
                    if (!dispatched) {
                        dispatch(l -> l.onMessageSent(m));
                    }
                    shownNow(null, m); // returned to the app
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
        } finally {
            synchronized (lock) {
                own.inFlight--;
            }
        }
    }

    /**
     * Marks one message read ({@code PUT /api/messages/{id}/read}); the sender gets onMessageRead.
     * Only a message the app has been given (its onMessageReceived or onMessageSent returned — or
     * is running and this is called from it —, or a fetch method or sendMessage returned it): any
     * other id throws {@link NotShownException} and nothing is sent.
     */
    public ReadReceipt markAsRead(long messageId) throws IOException {
        if (!wasShown(messageId)) {
            throw new NotShownException(messageId);
        }
        return ReadReceipt.fromJson(Json.object(Json.object(request("PUT", "/messages/" + messageId + "/read", null)), "data"));
    }

    /**
     * Marks every message of the matter up to {@code upToId} read, in one request
     * ({@code PUT /api/matters/{id}/read}) — never past {@link #shownUpTo}: a higher id is
     * lowered to it (the answer says {@code clamped}); with nothing shown no request is made and
     * the answer has up_to_id 0.
     */
    public MessagesRead markMatterRead(long matterId, long upToId) throws IOException {
        Long pos = shownUpTo(matterId);
        long upTo = Math.min(upToId, pos == null ? 0L : pos);
        if (upTo < 1) {
            JsonObject none = new JsonObject();
            none.addProperty("client_matter_id", matterId);
            none.addProperty("reader_id", opts.userId);
            none.addProperty("up_to_id", 0);
            none.add("read_at", com.google.gson.JsonNull.INSTANCE);
            none.addProperty("count", 0);
            none.addProperty("clamped", true);
            none.addProperty("requested_up_to_id", upToId);
            return MessagesRead.fromJson(none);
        }
        JsonObject body = new JsonObject();
        body.addProperty("up_to_id", upTo);
        JsonObject res = Json.object(Json.object(request("PUT", "/matters/" + matterId + "/read", body)), "data");
        if (upTo < upToId) {
            res.addProperty("clamped", true);
            res.addProperty("requested_up_to_id", upToId);
        }
        return MessagesRead.fromJson(res);
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

    // ------------------------------------------------------------------ push notifications

    /** The client event an app sends on its user channel when it goes to the background or comes back. */
    public static final String APP_STATE_EVENT = "client-parley-app-state";

    private volatile boolean appBackground;
    private volatile long deviceId;

    /**
     * {@code POST /api/devices}: registers the FCM registration token Firebase gave the app
     * ({@code FirebaseMessaging.getInstance().getToken()}, and again in
     * {@code onNewToken}), so that messages reach the phone while the app is closed.
     * Idempotent; a token another user registered moves to this one. Returns the device's id.
     */
    public long registerDevice(String fcmToken) throws IOException {
        return registerDevice("fcm", fcmToken);
    }

    /** {@link #registerDevice(String)} for another platform: {@code "fcm"} or {@code "apns"}. */
    public long registerDevice(String platform, String token) throws IOException {
        JsonObject body = new JsonObject();
        body.addProperty("platform", platform);
        body.addProperty("token", token);
        JsonObject d = Json.object(Json.object(request("POST", "/devices", body)), "data");
        deviceId = d.get("id").getAsLong();
        return deviceId;
    }

    /** {@code DELETE /api/devices/{id}}: no more pushes to it (call it at logout). */
    public void unregisterDevice(long id) throws IOException {
        request("DELETE", "/devices/" + id, null);
        if (id == deviceId) {
            deviceId = 0;
        }
    }

    /** Unregisters the device {@link #registerDevice(String)} registered; false if none. */
    public boolean unregisterDevice() throws IOException {
        long id = deviceId;
        if (id == 0) {
            return false;
        }
        unregisterDevice(id);
        return true;
    }

    /** {@code PUT /api/matters/{id}/settings {"muted"}}: a muted matter sends no push notifications. */
    public void setMatterMuted(long matterId, boolean muted) throws IOException {
        JsonObject body = new JsonObject();
        body.addProperty("muted", muted);
        request("PUT", "/matters/" + matterId + "/settings", body);
    }

    /**
     * Tells the server the app went to the background ({@code true}: pushes then arrive, while
     * the socket may stay open) or came back ({@code false}), with the client event
     * {@link #APP_STATE_EVENT} on the user channel; sent again after every reconnect. Call it
     * from the app's lifecycle (e.g. {@code ProcessLifecycleOwner}'s onStop / onStart). Needs
     * {@link #subscribeToUserChannel()}. Returns whether it was sent now.
     */
    public boolean setAppState(boolean background) {
        appBackground = background;
        return sendAppState();
    }

    /** Whether the app said it is in the background. */
    public boolean isAppInBackground() {
        return appBackground;
    }

    private boolean sendAppState() {
        PrivateChannel ch = pusher.getPrivateChannel(userChannelName(opts.userId));
        if (ch == null || !ch.isSubscribed() || pusher.getConnection().getState() != ConnectionState.CONNECTED) {
            return false;
        }
        JsonObject d = new JsonObject();
        d.addProperty("state", appBackground ? "background" : "foreground");
        try {
            ch.trigger(APP_STATE_EVENT, d.toString());
            return true;
        } catch (IllegalStateException e) {
            return false; // the channel or connection went down in between
        }
    }

    /** {@code GET /api/messages/unread-count}. */
    public UnreadCounts getUnreadCount() throws IOException {
        return UnreadCounts.fromJson(Json.object(request("GET", "/messages/unread-count", null)));
    }

    /**
     * A page of history, newest first ({@code page} from 1, {@code limit} 1-100). The messages
     * count as shown: a later catch-up does not deliver them, and they may be marked read. Page 1
     * moves the matter's position when it joins it.
     */
    public List<Message> fetchMessages(long matterId, int page, int limit) throws IOException {
        List<Message> list = remember(get("/messages?client_matter_id=" + matterId + "&page=" + page + "&limit=" + limit));
        if (page <= 1) {
            newestRead(matterId, list, list.size() < limit);
        }
        return list;
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
        List<Message> list = remember(get("/messages?client_matter_id=" + matterId + "&after_id=" + afterId + "&limit=" + limit));
        afterRead(matterId, afterId, list, list.size() < limit);
        return list;
    }

    /** A page the app fetched: never delivered afterwards, and shown (it is returned to the app). */
    private List<Message> remember(List<Message> list) {
        synchronized (lock) {
            for (Message m : list) {
                once("m:" + m.id);
                shownNow(null, m);
            }
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
