// Types for @parley/realtime-chat (index.js).

export interface ChatUser {
  id: number | string;
  name: string;
  [key: string]: unknown;
}

export interface ReadBy {
  user_id: number;
  read_at: string;
}

/** A message as the REST API and the MessageSent / MessageUpdated / MessageDeleted events carry it. */
export interface ChatMessage {
  id: number;
  message: string;
  client_matter_id: number;
  sender_id: number;
  sender_name: string;
  created_at: string;
  updated_at: string;
  edited_at: string | null;
  read_at: string | null;
  /** Whether the caller has read it (the caller's own messages count as read). */
  is_read?: boolean;
  /** For the sender: who has read it, and when. */
  read_by?: ReadBy[];
  deleted_at?: string | null;
  client_message_id?: string | null;
  /**
   * In MessageSent and the send's answer: the id of the message before this one in its matter
   * (0 for the first). The SDK uses it to emit each matter's messages once and in id order.
   */
  previous_id?: number;
  [key: string]: unknown;
}

/** A device registered for push notifications. */
export interface Device {
  id: number;
  user_id: number;
  platform: 'fcm' | 'apns' | 'webpush';
  /** FCM and APNs. */
  token?: string;
  /** Web Push. */
  endpoint?: string;
  created_at: string;
  updated_at: string;
}

export interface Matter {
  id: number;
  title: string;
  unread_count: number;
  last_message?: ChatMessage | null;
  members?: { id: number; name: string }[];
  [key: string]: unknown;
}

export interface Paginated<T> {
  data: T[];
  current_page: number;
  per_page: number;
  total: number;
  last_page: number;
  from: number | null;
  to: number | null;
}

export interface UnreadCounts {
  user_id: number;
  unread_count: number;
  matters: Record<string, number>;
}

export interface Receipt {
  message_id: number;
  reader_id: number;
  read_at: string | null;
  client_matter_id: number;
}

export interface ReadUpTo {
  client_matter_id: number;
  reader_id: number;
  /** What was marked: markMatterRead lowers it to shownUpTo(matterId); 0 when nothing was shown (no request made). */
  up_to_id: number;
  read_at: string | null;
  count: number;
  /** markMatterRead's answer when the upToId asked for was past what the SDK has shown. */
  clamped?: boolean;
  requested_up_to_id?: number;
}

export interface QueuedMessage {
  client_message_id: string;
  message: string;
  client_matter_id: number;
  sender_id: number;
  queued_at: string;
  attempts: number;
}

export type ConnectionState = 'initialized' | 'connecting' | 'connected' | 'unavailable' | 'failed' | 'disconnected';

export interface ChatError {
  type: 'app_key' | 'unauthorized' | 'protocol' | 'refused' | 'socket' | 'unavailable' | 'subscription' | 'send' | 'catchup' | 'storage' | 'handler';
  message: string;
  code?: number;
  status?: number;
  error?: unknown;
}

export interface RealtimeChatEvents {
  /** Each message of a followed matter once, in id order per matter: live, or fetched by a catch-up. */
  onMessageReceived: { message: ChatMessage; matterId: number; source: 'live' | 'catchup' };
  /**
   * One of your sends was stored, once per send: when the answer to its POST comes, or earlier, in
   * its place in id order, when a catch-up (or the socket) brings the stored message first (then
   * `message` is as fetched, without previous_id, and the answer emits nothing more).
   */
  onMessageSent: { message: ChatMessage; client_message_id: string; queued?: boolean };
  onMessageQueued: { item: QueuedMessage; queue: QueuedMessage[] };
  onMessageFailed: { item: QueuedMessage; status?: number; error: Error };
  onQueueChanged: { queue: QueuedMessage[] };
  onMessageUpdated: { message: ChatMessage };
  onMessageDeleted: { message: ChatMessage };
  onMessageRead: Receipt;
  onMessagesRead: ReadUpTo;
  onUnreadCountUpdated: UnreadCounts;
  onTyping: { matterId: number; userId: number; name: string | null; typing: boolean };
  onPresenceChanged: { matterId: number; members: ChatUser[] };
  onMemberJoined: { matterId: number; member: ChatUser };
  onMemberLeft: { matterId: number; member: ChatUser };
  onNotification: { message: ChatMessage; matterId: number };
  onConnectionStateChange: { previous: ConnectionState; current: ConnectionState };
  onConnected: { socketId: string | null; reconnected: boolean };
  onDisconnected: { state: ConnectionState };
  onCatchUp: { matterId: number; messages: ChatMessage[] };
  onError: ChatError;
}

export type RealtimeChatEvent = keyof RealtimeChatEvents;

/** localStorage, or anything with the same three methods (they may return promises, e.g. AsyncStorage). */
export interface QueueStorage {
  getItem(key: string): string | null | Promise<string | null>;
  setItem(key: string, value: string): void | Promise<void>;
  removeItem(key: string): void | Promise<void>;
}

export interface RealtimeChatOptions {
  wsHost: string;
  wsPort?: number;
  wssPort?: number;
  /** The app key (PARLEY_APP_KEY / REVERB_APP_KEY). */
  reverbKey: string;
  forceTLS?: boolean;
  /** A bearer token (POST /api/auth/login, or a Sanctum token). */
  authToken: string;
  userId: number | string;
  /** Default: http(s)://wsHost:wsPort/api */
  apiBaseUrl?: string;
  /** Shown to others in typing whispers; fetched (GET /user) when a matter is subscribed if missing. */
  userName?: string;
  /** Default: {apiBaseUrl}/broadcasting/auth */
  authEndpoint?: string;
  /** Event namespace; default 'App\\Events', '' for bare names. */
  namespace?: string;
  /** Where the offline queue is kept; default localStorage if there is one, null = memory. */
  storage?: QueueStorage | null;
  queueKey?: string;
  typingThrottleMs?: number;
  typingTimeoutMs?: number;
  /** Join presence-matter.{id} with each matter (default true). */
  presence?: boolean;
  /** pusher-js class to use (e.g. from 'pusher-js/react-native'); default: import 'pusher-js'. */
  Pusher?: unknown;
  /** laravel-echo class; default: import 'laravel-echo'. */
  Echo?: unknown;
  fetch?: typeof fetch;
  /** More options for Echo / pusher-js. */
  pusherOptions?: Record<string, unknown>;
  autoConnect?: boolean;
}

export declare const EVENTS: readonly RealtimeChatEvent[];

export declare class ChatApiError extends Error {
  status: number;
  body: unknown;
  method: string;
  path: string;
}

export declare class NetworkError extends Error {
  url: string;
  cause: unknown;
}

/** markAsRead of a message this instance has not shown (not emitted, loaded or sent by it); nothing was sent. */
export declare class NotShownError extends Error {
  messageId: number;
}

export declare class RealtimeChat {
  constructor(options: RealtimeChatOptions);
  readonly options: RealtimeChatOptions;
  readonly userId: number;
  userName: string | null;
  readonly apiBaseUrl: string;
  /** The laravel-echo instance and its pusher-js client. */
  readonly echo: any;
  readonly pusher: any;
  readonly connectionState: ConnectionState;
  readonly isConnected: boolean;
  readonly pendingMessages: QueuedMessage[];

  on<E extends RealtimeChatEvent>(event: E, fn: (payload: RealtimeChatEvents[E]) => void): () => void;
  off<E extends RealtimeChatEvent>(event: E, fn: (payload: RealtimeChatEvents[E]) => void): void;

  socketId(): string | null;
  reconnect(): void;
  disconnect(): void;

  subscribeToUserChannel(): unknown;
  subscribeToMatterChannel(matterId: number, options?: { lastMessageId?: number; presence?: boolean }): unknown;
  unsubscribeFromMatterChannel(matterId: number): void;
  onlineMembers(matterId: number): ChatUser[];
  typingUsers(matterId: number): number[];

  request<T = unknown>(method: string, path: string, body?: unknown): Promise<T>;
  me(): Promise<ChatUser>;
  getMatters(): Promise<Matter[]>;
  getUnreadCount(): Promise<UnreadCounts>;
  getMessages(matterId: number, options?: { page?: number; limit?: number; afterId?: number; beforeId?: number }): Promise<Paginated<ChatMessage>>;
  loadHistory(matterId: number, options?: { limit?: number }): Promise<ChatMessage[]>;
  loadOlder(matterId: number, beforeId: number, options?: { limit?: number }): Promise<ChatMessage[]>;
  catchUp(matterId: number): Promise<ChatMessage[]>;
  /** The newest id up to which everything of the matter was shown (what markMatterRead may mark); null while unknown. */
  shownUpTo(matterId: number): number | null;

  sendMessage(message: { message: string; client_matter_id: number; client_message_id?: string }): Promise<ChatMessage>;
  flushQueue(): Promise<void>;
  cancelQueued(clientMessageId: string): boolean;
  /** Rejects with NotShownError (no request) for a message this instance has not shown. */
  markAsRead(messageId: number): Promise<Receipt>;
  /** Never marks past shownUpTo(matterId): a higher upToId is lowered (clamped: true in the answer). */
  markMatterRead(matterId: number, upToId: number): Promise<ReadUpTo>;
  editMessage(messageId: number, message: string): Promise<ChatMessage>;
  deleteMessage(messageId: number): Promise<ChatMessage | undefined>;

  /** A push target: POST /api/devices answers it. */
  registerDevice(device: { platform: 'fcm' | 'apns'; token: string } | { platform: 'webpush'; subscription: PushSubscriptionJSON | PushSubscription }): Promise<Device>;
  /** DELETE /api/devices/{id}; default: the device registerDevice registered. */
  unregisterDevice(id?: number): Promise<boolean>;
  listDevices(): Promise<Device[]>;
  /** PUT /api/matters/{id}/settings {muted}: no push notifications for that matter. */
  setMatterMuted(matterId: number, muted: boolean): Promise<{ client_matter_id: number; muted: boolean }>;
  /** Browsers: subscribes the service worker to Web Push with the server's VAPID key and registers it. */
  enableWebPush(registration: ServiceWorkerRegistration): Promise<Device>;
  /** Tells the server the app went to the background (push notifications then arrive) or came back. */
  setAppState(state: 'background' | 'foreground'): boolean;
  readonly appState: 'background' | 'foreground';

  typing(matterId: number): boolean;
  stopTyping(matterId: number): boolean;
}

export default RealtimeChat;
