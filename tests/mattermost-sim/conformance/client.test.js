// Conformance test: the official @mattermost/client (Client4 + WebSocketClient)
// against the simulator. run.sh starts the simulator and passes its seed line
// (bot, user, team, channel, DM with ids and tokens) in MM_SIM_SEED.
'use strict';

const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');

// Harness preamble (protocol reference, section 3): the client reads the
// global WebSocket and constructs CloseEvent, which Node 20 lacks.
const WS = require('ws');
globalThis.WebSocket ??= WS;
globalThis.CloseEvent ??= class CloseEvent extends Event {
    constructor(type, init = {}) {
        super(type);
        Object.assign(this, {code: init.code, reason: init.reason, wasClean: init.wasClean});
    }
};
const {Client4, WebSocketClient} = require('@mattermost/client');

const seed = JSON.parse(process.env.MM_SIM_SEED ?? 'null');
if (!seed) {
    throw new Error('MM_SIM_SEED is not set: run this through run.sh');
}
const base = seed.url;
const bot = seed.bot;
const alice = seed.user;
const WAIT_MS = 15000;

/** Calls the simulator's control API. */
async function sim(method, path, body) {
    const res = await fetch(`${base}/__sim${path}`, {
        method,
        headers: {'Content-Type': 'application/json'},
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) {
        throw new Error(`control ${method} ${path}: ${res.status} ${text}`);
    }
    return text ? JSON.parse(text) : null;
}

function clientFor(token) {
    const c = new Client4();
    c.setUrl(base);
    c.setToken(token);
    return c;
}

/** Resolves with the first message accepted by `pred`, or rejects on timeout. */
function waitFor(messages, pred, what) {
    return new Promise((resolve, reject) => {
        const hit = messages.items.find(pred);
        if (hit) {
            resolve(hit);
            return;
        }
        const timer = setTimeout(() => {
            messages.waiters.delete(check);
            reject(new Error(`timed out waiting for ${what}`));
        }, WAIT_MS);
        function check(msg) {
            if (pred(msg)) {
                clearTimeout(timer);
                messages.waiters.delete(check);
                resolve(msg);
            }
        }
        messages.waiters.add(check);
    });
}

/** A WebSocketClient that records every event it delivers. */
function openSocket({token, headerAuth}) {
    const messages = {items: [], waiters: new Set()};
    const stats = {missed: 0, closes: 0, reconnects: 0};
    const ws = new WebSocketClient({
        // Header auth through newWebSocketFn is what makes resume possible.
        newWebSocketFn: (url) => (headerAuth ?
            new WS(url, {headers: {Authorization: `Bearer ${token}`}}) :
            new WS(url)),
        minWebSocketRetryTime: 200,
        reconnectJitterRange: 100,
    });
    ws.addMessageListener((msg) => {
        messages.items.push(msg);
        for (const w of [...messages.waiters]) {
            w(msg);
        }
    });
    ws.addMissedMessageListener(() => {
        stats.missed++;
    });
    ws.addCloseListener(() => {
        stats.closes++;
    });
    ws.addReconnectListener(() => {
        stats.reconnects++;
    });
    const url = clientFor(token).getWebSocketUrl().replace(/^http/, 'ws');
    if (headerAuth) {
        ws.initialize(url);
    } else {
        ws.initialize(url, token);
    }
    return {ws, messages, stats};
}

function parsePost(msg) {
    return JSON.parse(msg.data.post);
}

let botClient;
let aliceClient;
const sockets = [];

before(() => {
    botClient = clientFor(bot.token);
    aliceClient = clientFor(alice.token);
});

after(() => {
    for (const s of sockets) {
        s.ws.close();
    }
});

test('Client4: bot identity, config, and real error objects', async () => {
    const me = await botClient.getMe();
    assert.equal(me.id, bot.id);
    assert.equal(me.is_bot, true);

    const config = await botClient.getClientConfig();
    assert.equal(config.MaxPostSize, '16383');
    for (const [key, value] of Object.entries(config)) {
        assert.equal(typeof value, 'string', `config ${key} must be a string`);
    }

    const bad = clientFor('not-a-token');
    await assert.rejects(bad.getMe(), (err) => {
        assert.equal(err.status_code, 401);
        assert.equal(err.server_error_id, 'api.context.session_expired.app_error');
        return true;
    });
});

test('Client4: DM, posts, patch with edit history, threads', async () => {
    const dm = await botClient.createDirectChannel([bot.id, alice.id]);
    assert.equal(dm.type, 'D');
    assert.equal(dm.id, seed.dm.id);
    const again = await botClient.createDirectChannel([bot.id, alice.id]);
    assert.equal(again.id, dm.id);

    const post = await botClient.createPost({channel_id: dm.id, message: 'first', pending_post_id: `${bot.id}:1`});
    assert.equal(post.props.from_bot, 'true');
    assert.equal(post.pending_post_id, `${bot.id}:1`);
    const dup = await botClient.createPost({channel_id: dm.id, message: 'first', pending_post_id: `${bot.id}:1`});
    assert.equal(dup.id, post.id, 'pending_post_id dedupes');

    const patched = await botClient.patchPost({id: post.id, message: 'first, edited', props: {step: 'two'}});
    assert.equal(patched.message, 'first, edited');
    assert.deepEqual(patched.props, {step: 'two'}, 'patch replaces props wholesale');
    assert.ok(patched.edit_at > 0);
    const edits = await sim('GET', `/posts/${post.id}/edits`);
    assert.equal(edits.length, 1);
    assert.equal(edits[0].message, 'first');
    assert.equal(edits[0].original_id, post.id);

    const tooLong = 'x'.repeat(16384);
    await assert.rejects(botClient.createPost({channel_id: dm.id, message: tooLong}), (err) => {
        assert.equal(err.status_code, 400);
        assert.equal(err.server_error_id, 'model.post.is_valid.message_length.app_error');
        return true;
    });

    // A thread longer than getPostThread's 60-post page.
    const root = await botClient.createPost({channel_id: dm.id, message: 'thread root'});
    const replies = [];
    for (let i = 0; i < 65; i++) {
        const client = i % 2 ? aliceClient : botClient;
        replies.push(await client.createPost({channel_id: dm.id, root_id: root.id, message: `reply ${i}`}));
    }
    await assert.rejects(
        botClient.createPost({channel_id: dm.id, root_id: replies[0].id, message: 'reply to reply'}),
        (err) => err.server_error_id === 'api.post.create_post.root_id.app_error',
    );

    const first = await botClient.getPostThread(root.id);
    assert.equal(first.order[0], root.id);
    assert.equal(first.has_next, true);
    assert.equal(first.order.length, 60, 'root plus 59 replies in the first page of 60');
    const seen = [...first.order];
    let page = first;
    while (page.has_next) {
        const last = page.posts[page.order[page.order.length - 1]];
        page = await botClient.getPaginatedPostThread(root.id, {
            fromPost: last.id,
            fromCreateAt: last.create_at,
            perPage: 60,
            direction: 'down',
        });
        seen.push(...page.order.filter((id) => id !== root.id));
    }
    assert.deepEqual(seen, [root.id, ...replies.map((r) => r.id)]);
    assert.equal(first.posts[root.id].reply_count, 65);

    const all = await botClient.getPaginatedPostThread(root.id, {fetchAll: true});
    assert.equal(all.order.length, 66);
    assert.equal(all.has_next, false);

    // `since` returns what changed after the time: the last replies, and the
    // root, whose update_at each reply bumps.
    const since = await botClient.getPostsSince(dm.id, replies[60].create_at);
    assert.deepEqual(new Set(since.order), new Set([root.id, ...replies.slice(61).map((r) => r.id)]));
});

test('Client4: upload a file, attach it, react', async () => {
    const form = new FormData();
    form.append('channel_id', seed.dm.id);
    form.append('files', new Blob(['hello from the conformance test\n'], {type: 'text/plain'}), 'hello.txt');
    const upload = await botClient.uploadFile(form);
    assert.equal(upload.file_infos.length, 1);
    const info = upload.file_infos[0];
    assert.equal(info.name, 'hello.txt');
    assert.equal(info.extension, 'txt');

    const post = await botClient.createPost({channel_id: seed.dm.id, message: 'with file', file_ids: [info.id, 'bogusbogusbogusbogusbogus1']});
    assert.deepEqual(post.file_ids, [info.id], 'unknown file ids are dropped silently');
    const infos = await botClient.getFileInfosForPost(post.id);
    assert.equal(infos.length, 1);
    assert.equal(infos[0].post_id, post.id);

    const reaction = await botClient.addReaction(bot.id, post.id, 'eyes');
    assert.equal(reaction.emoji_name, 'eyes');
    assert.equal(reaction.channel_id, seed.dm.id);
    const reactions = await botClient.getReactionsForPost(post.id);
    assert.deepEqual(reactions.map((r) => r.emoji_name), ['eyes']);
});

test('WebSocketClient (header auth): events, then resume after a killed socket', async () => {
    const s = openSocket({token: bot.token, headerAuth: true});
    sockets.push(s);
    const hello = await waitFor(s.messages, (m) => m.event === 'hello', 'hello');
    const connectionId = hello.data.connection_id;
    assert.match(connectionId, /^[a-z0-9]{26}$/);

    const byAlice = await sim('POST', '/posts', {user_id: alice.id, channel_id: seed.dm.id, message: 'hello bot'});
    const posted = await waitFor(s.messages, (m) => m.event === 'posted' && parsePost(m).id === byAlice.id, 'posted');
    assert.equal(posted.data.channel_type, 'D');
    assert.equal(posted.data.sender_name, `@${alice.username}`);
    assert.deepEqual(JSON.parse(posted.data.mentions), [bot.id]);
    assert.equal(posted.broadcast.channel_id, seed.dm.id);

    await sim('POST', '/reactions', {user_id: alice.id, post_id: byAlice.id, emoji_name: 'thumbsup'});
    const reacted = await waitFor(s.messages, (m) => m.event === 'reaction_added', 'reaction_added');
    assert.equal(JSON.parse(reacted.data.reaction).emoji_name, 'thumbsup');

    // Kill the socket; what happens while it is down must be replayed on resume.
    const killed = await sim('POST', '/sockets/kill', {user_id: bot.id, mode: 'close'});
    assert.equal(killed.killed, 1);
    const whileDown = [];
    for (let i = 0; i < 3; i++) {
        whileDown.push(await sim('POST', '/posts', {user_id: alice.id, channel_id: seed.dm.id, message: `while down ${i}`}));
    }
    for (const p of whileDown) {
        await waitFor(s.messages, (m) => m.event === 'posted' && parsePost(m).id === p.id, `replayed ${p.message}`);
    }
    const afterResume = await sim('POST', '/posts', {user_id: alice.id, channel_id: seed.dm.id, message: 'after resume'});
    await waitFor(s.messages, (m) => m.event === 'posted' && parsePost(m).id === afterResume.id, 'post after resume');

    assert.equal(s.stats.missed, 0, 'resume must not report missed messages');
    assert.ok(s.stats.reconnects >= 1, 'the client reconnected');
    assert.equal(s.messages.items.filter((m) => m.event === 'hello').length, 1, 'no second hello on resume');
    const seqs = s.messages.items.map((m) => m.seq);
    assert.deepEqual(seqs, seqs.map((_, i) => i), 'seq is gap-free from 0');
    const conns = await sim('GET', '/connections');
    assert.ok(conns.some((c) => c.connection_id === connectionId && c.active), 'same connection resumed');
});

test('WebSocketClient (challenge auth): hello, ping reply, and no resume', async () => {
    const s = openSocket({token: alice.token, headerAuth: false});
    sockets.push(s);
    const hello = await waitFor(s.messages, (m) => m.event === 'hello', 'hello');
    const pong = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no ping reply')), WAIT_MS);
        s.ws.ping((msg) => {
            clearTimeout(timer);
            resolve(msg);
        });
    });
    assert.equal(pong.status, 'OK');
    assert.equal(pong.data.text, 'pong');

    await sim('POST', '/sockets/kill', {user_id: alice.id, mode: 'drop'});
    const second = await waitFor(
        s.messages,
        (m) => m.event === 'hello' && m.data.connection_id !== hello.data.connection_id,
        'a new hello after reconnect',
    );
    assert.notEqual(second.data.connection_id, hello.data.connection_id);
    assert.equal(s.stats.missed, 1, 'challenge-auth reconnects report missed messages');

    // Typing from alice reaches the bot's socket (opened by the previous test).
    s.ws.userTyping(seed.dm.id, '');
    const botSocket = sockets[0];
    const typing = await waitFor(botSocket.messages, (m) => m.event === 'typing', 'typing');
    assert.equal(typing.data.user_id, alice.id);
    assert.deepEqual(typing.broadcast.omit_users, {[alice.id]: true});
});

test('WebSocketClient: mentions per recipient, channel notify props, viewMyChannel', async () => {
    // Carol (X) watches with her own socket; alice writes.
    const carol = await sim('POST', '/users', {username: 'carol'});
    const carolClient = clientFor(carol.token);
    const s = openSocket({token: carol.token, headerAuth: true});
    sockets.push(s);
    await waitFor(s.messages, (m) => m.event === 'hello', 'hello');
    const posted = (post) => waitFor(
        s.messages,
        (m) => m.event === 'posted' && parsePost(m).id === post.id,
        `posted ${JSON.stringify(post.message)}`,
    );
    const mentionsOf = (msg) => (msg.data.mentions === undefined ? undefined : JSON.parse(msg.data.mentions));

    // A group message mentions every member but the author: the bot too.
    const gm = await sim('POST', '/direct', {user_ids: [alice.id, bot.id, carol.id]});
    assert.equal(gm.type, 'G');
    const gmPost = await aliceClient.createPost({channel_id: gm.id, message: 'lunch, anyone?'});
    assert.deepEqual(mentionsOf(await posted(gmPost)), [carol.id]);
    const botSocket = sockets[0];
    const toBot = await waitFor(
        botSocket.messages,
        (m) => m.event === 'posted' && parsePost(m).id === gmPost.id,
        'the group post on the bot socket',
    );
    assert.deepEqual(mentionsOf(toBot), [bot.id]);

    const channel = await sim('POST', '/channels', {team_id: seed.team.id, name: 'mentions', type: 'O'});
    for (const id of [alice.id, carol.id]) {
        await sim('POST', `/channels/${channel.id}/members`, {user_id: id});
    }
    const cases = [
        ['@here, standup', [carol.id]],
        [`thanks @${carol.username.toUpperCase()}.`, [carol.id]],
        ['no mention at all', undefined],
        [`quoting \`@${carol.username}\` in code`, undefined],
        [`@${carol.username}x is someone else`, undefined],
    ];
    for (const [message, want] of cases) {
        const post = await aliceClient.createPost({channel_id: channel.id, message});
        assert.deepEqual(mentionsOf(await posted(post)), want, message);
    }

    // Carol mutes channel-wide mentions in this channel.
    const ok = await carolClient.updateChannelNotifyProps({
        channel_id: channel.id,
        user_id: carol.id,
        ignore_channel_mentions: 'on',
    });
    assert.equal(ok.status, 'OK');
    const updated = await waitFor(s.messages, (m) => m.event === 'channel_member_updated', 'channel_member_updated');
    assert.equal(JSON.parse(updated.data.channelMember).notify_props.ignore_channel_mentions, 'on');
    const muted = await aliceClient.createPost({channel_id: channel.id, message: '@channel deploy at noon'});
    assert.equal(mentionsOf(await posted(muted)), undefined);

    // Mentions counted, then read away.
    const before = await carolClient.getMyChannelMember(channel.id);
    assert.equal(before.mention_count, 2);
    const view = await carolClient.viewMyChannel(channel.id);
    assert.equal(view.status, 'OK');
    assert.equal(view.last_viewed_at_times[channel.id], muted.create_at);
    const viewed = await waitFor(s.messages, (m) => m.event === 'multiple_channels_viewed', 'multiple_channels_viewed');
    assert.equal(viewed.data.channel_times[channel.id], muted.create_at);
    const after = await carolClient.getMyChannelMember(channel.id);
    assert.equal(after.mention_count, 0);
    assert.equal(after.msg_count, cases.length + 1);
    assert.equal(after.last_viewed_at, muted.create_at);
});
