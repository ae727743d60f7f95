/**
 * An SRS API address that still reaches the server's EARLIER process (a rolling restart: the new
 * pod is up and heartbeats, the old one still answers at the edge's host name while it drains).
 * The earlier process answers "not found" (it never had the new process's clients), and versions
 * names it: same server_id, another service_id. That service_id is one the registry retired when
 * the new process heartbeated: it proves the address reaches the wrong process, not that the
 * session's process is gone. The session must stand (unknown), never be ended as a ghost.
 */
import { describe, expect, it, vi } from "vitest";
import { admin, createStream, heartbeat, hook, play, publish, streamState, uniqueStream } from "../srs";
import { ALLOW, deviceOf, edgeWithApi, installFakeSrs, takeoverReady } from "../fake-srs";
import { restarted } from "../fleet";

installFakeSrs();

describe("the API address still reaches the server's earlier process", () => {
  it("a live viewer of the new process is not ended as a ghost, and the cap holds", async () => {
    const { edge: old, fake } = await edgeWithApi([]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    // The server restarts: the new process heartbeats (the old one is retired), but its host name still reaches the old one.
    const now = restarted(old);
    expect(await hook({ ...heartbeat(now), device_id: deviceOf(old) }, undefined, "/heartbeat")).toEqual(ALLOW);
    expect(fake.service).toBe(old.service);
    expect(await hook(play("live", s, { ...now, client: "view0001" }))).toEqual(ALLOW);
    // A second viewer on the new process, at the cap: the refusal asks the API about view0001.
    const second = await hook(play("live", s, { ...now, client: "view0002" }));
    expect(fake.calls.length).toBeGreaterThan(0);
    expect(second.body.code).toBe(4005);
    expect(await streamState(s)).toMatchObject({ viewers: 1 });
    const events = (await admin("GET", `/streams/live/${s}/events`)).body.events;
    expect(events.filter((e: any) => e.action === "ghost")).toEqual([]);
  });

  it("a live publisher of the new process is not ended as a ghost: a second one is refused as busy", async () => {
    const { edge: old, fake } = await edgeWithApi([]);
    const s = uniqueStream();
    const key = await createStream(s);
    const now = restarted(old);
    expect(await hook({ ...heartbeat(now), device_id: deviceOf(old) }, undefined, "/heartbeat")).toEqual(ALLOW);
    expect(await hook(publish("live", s, key, { ...now, client: "enc00001" }))).toEqual(ALLOW);
    const other = await edgeWithApi(["enc00002"]);
    const second = await hook(publish("live", s, key, { ...other.edge, client: "enc00002" }));
    expect(fake.calls.length).toBeGreaterThan(0);
    expect(second.body.code).toBe(4004);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00001", state: "live" });
  });

  it("a takeover does not take the old publisher for gone: it is refused, the old one keeps the stream", async () => {
    const { a, b, s, key } = await takeoverReady();
    const now = restarted(a.edge);
    expect(await hook({ ...heartbeat(now), device_id: deviceOf(a.edge) }, undefined, "/heartbeat")).toEqual(ALLOW);
    // The new process of a has a publisher (a's old one ended with its process); the old process still answers a's host.
    expect(await hook(publish("live", s, key, { ...now, client: "enc00009" }))).toEqual(ALLOW);
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(a.fake.calls.length).toBeGreaterThan(0);
    expect(r.body.code).toBe(4009);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00009", state: "live" });
  });
});

describe("who answers at the address, remembered from before a restart", () => {
  it("a real ghost of the new process, moments after the restart, still frees its slot (the earlier process's identity, kept 5 s, is asked again)", async () => {
    const { edge: old, fake } = await edgeWithApi(["view0001"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    // A ghost of the old process is found: who answers at the address (the old process) is now kept.
    expect(await hook(play("live", s, { ...old, client: "ghost001" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...old, client: "view0001" }))).toEqual(ALLOW);
    expect(fake.calls.some((c) => c.path === "/api/v1/versions")).toBe(true);
    // The server restarts at once: the new process answers at the address and heartbeats.
    const now = restarted(old);
    fake.service = now.service;
    fake.clients.clear();
    expect(await hook({ ...heartbeat(now), device_id: deviceOf(old) }, undefined, "/heartbeat")).toEqual(ALLOW);
    fake.clients.add("view0002");
    expect(await hook(play("live", s, { ...now, client: "view0002" })), "view0002").toEqual(ALLOW);
    // view0002 leaves; its on_stop is lost. The next viewer is refused only if SRS still has view0002.
    fake.clients.delete("view0002");
    fake.clients.add("view0003");
    expect(await hook(play("live", s, { ...now, client: "view0003" })), "view0003").toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ viewers: 1 });
  });
});

describe("a kick answered by the server's earlier process", () => {
  it("is not told 'already gone': the kick waits for the address to reach the session's process", async () => {
    const { edge: old, fake } = await edgeWithApi([]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 10 });
    const now = restarted(old);
    expect(await hook({ ...heartbeat(now), device_id: deviceOf(old) }, undefined, "/heartbeat")).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...now, client: "view0001" }))).toEqual(ALLOW);
    expect((await admin("DELETE", `/streams/live/${s}/sessions?client=view0001`)).body.kicking).toHaveLength(1);
    const told = async () => (await admin("GET", `/streams/live/${s}/events`)).body.events.filter((e: any) => e.action === "kick" || e.action === "kick-wait").map((e: any) => e.reason);
    await vi.waitFor(async () => expect((await told()).length).toBeGreaterThan(0), { timeout: 5_000, interval: 50 });
    expect(fake.calls.length).toBeGreaterThan(0);
    expect(await told()).not.toContain("kick: the client was already gone (ended by operator)");
    expect((await told())[0]).toMatch(/^kick waiting: edge's API answered as an earlier process of the server/);
  });
});
