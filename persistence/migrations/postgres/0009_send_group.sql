-- The group commit's send in one statement: one round trip instead of four
-- (BEGIN, the matters' lock, the insert, COMMIT), each of which waited for
-- PostgreSQL to be scheduled again on a busy machine.
--
-- The function runs as its caller's statement, in the transaction of that
-- statement (autocommit: it commits when the function returns). Its two
-- statements each take a fresh snapshot (a VOLATILE function in READ
-- COMMITTED), so the insert, which starts after the lock is held, sees every
-- message a group that held the lock before committed: prev is right, and
-- identity values are drawn after the lock, so ids commit in order per matter.
--
-- Rows: one per matter that exists (members set: its member ids,
-- ascending, in the insert's snapshot), then one per inserted message in id
-- order (members NULL), with its sender's name and the id of its matter's
-- newest message before the group. A send is inserted only when its matter
-- exists and its sender is a member; a repeated client_message_id inserts
-- nothing (ON CONFLICT); the caller tells these apart from the matter rows.
CREATE FUNCTION parley_send_group(
	p_matters BIGINT[], p_matter BIGINT[], p_sender BIGINT[], p_body TEXT[], p_cid TEXT[], p_at TIMESTAMPTZ[])
RETURNS TABLE (members BIGINT[], id BIGINT, matter_id BIGINT, sender_id BIGINT, body TEXT,
	created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, edited_at TIMESTAMPTZ, client_message_id TEXT,
	sender_name TEXT, before_id BIGINT)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
	-- In id order, so that groups on several nodes cannot deadlock. NO KEY
	-- UPDATE does not block the foreign-key checks of other tables' inserts.
	PERFORM 1 FROM matters m WHERE m.id = ANY(p_matters) ORDER BY m.id FOR NO KEY UPDATE OF m;
	RETURN QUERY
	WITH mem AS (
		SELECT m.id AS matter_id,
			ARRAY(SELECT mm.user_id FROM members mm WHERE mm.matter_id = m.id ORDER BY mm.user_id) AS ids
		FROM matters m WHERE m.id = ANY(p_matters)),
	prev AS (
		SELECT mem.matter_id, (SELECT max(x.id) FROM messages x WHERE x.matter_id = mem.matter_id) AS id FROM mem),
	ins AS (
		INSERT INTO messages (matter_id, sender_id, body, client_message_id, created_at, updated_at)
		SELECT t.matter_id, t.sender_id, t.body, t.cid, t.at, t.at
		FROM unnest(p_matter, p_sender, p_body, p_cid, p_at) WITH ORDINALITY AS t (matter_id, sender_id, body, cid, at, ord)
		JOIN mem ON mem.matter_id = t.matter_id AND t.sender_id = ANY(mem.ids)
		ORDER BY t.ord
		ON CONFLICT DO NOTHING
		RETURNING messages.id, messages.matter_id, messages.sender_id, messages.body, messages.created_at,
			messages.updated_at, messages.edited_at, messages.client_message_id)
	SELECT mem.ids, NULL::BIGINT, mem.matter_id, NULL::BIGINT, NULL::TEXT, NULL::TIMESTAMPTZ, NULL::TIMESTAMPTZ,
		NULL::TIMESTAMPTZ, NULL::TEXT, NULL::TEXT, NULL::BIGINT
	FROM mem
	UNION ALL
	SELECT NULL::BIGINT[], ins.id, ins.matter_id, ins.sender_id, ins.body, ins.created_at, ins.updated_at,
		ins.edited_at, ins.client_message_id, u.name, COALESCE(prev.id, 0)
	FROM ins JOIN users u ON u.id = ins.sender_id JOIN prev ON prev.matter_id = ins.matter_id;
END $$;
