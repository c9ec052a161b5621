/**
 * The tool calls of one MCP server whose end is read from their response, as the server's transport
 * sends it, rather than from a reaction on the handler's promise (instrument-server.ts).
 *
 * Why: whatever a call holds while its tool runs lives as long as the tool, so it is copied by the
 * gateway's scavenges and then marked by its mark-compacts, and the gateway's p99 pays for it. A
 * reaction on the handler's promise is a promise and a reaction per call (96 B), and a Map from
 * request id to call churns a hash table as big as the calls in flight. Here a call in flight is a
 * slot in an array indexed by its JSON-RPC id, holding the (pooled) ToolCall: nothing is allocated
 * per call.
 *
 * Integer ids only (what the SDK's clients send); the table grows (doubling, up to MAX_SLOTS) when two
 * calls in flight share a slot, so its size follows the calls in flight, not the ids. A call that
 * still finds its slot taken is not held here (its caller measures it another way).
 */
import type { ToolCall } from './tool-call.ts';

const FIRST_SLOTS = 16;
/** 65,536 calls in flight on one server's connection (512 KB of slots). */
const MAX_SLOTS = 1 << 16;

export class InFlightCalls {
  private slots: (ToolCall | undefined)[] = new Array<ToolCall | undefined>(FIRST_SLOTS).fill(undefined);
  private held = 0;

  /** Calls held now. */
  get size(): number {
    return this.held;
  }

  /** Holds `call` under its request id (sent over `via`); false when that id is not an integer or no slot is free for it. */
  hold(call: ToolCall, via: object): boolean {
    const id = call.requestId;
    if (typeof id !== 'number' || !Number.isSafeInteger(id)) return false;
    while (this.slots[slotOf(id, this.slots.length)] !== undefined) {
      if (this.slots.length >= MAX_SLOTS) return false;
      this.grow();
    }
    call.heldVia = via;
    this.slots[slotOf(id, this.slots.length)] = call;
    this.held++;
    return true;
  }

  /** The call held under `id` for `via`, no longer held; undefined when there is none. */
  take(id: unknown, via: object | undefined): ToolCall | undefined {
    const call = this.find(id, via);
    if (call !== undefined) this.release(slotOf(id as number, this.slots.length), call);
    return call;
  }

  /** The call held under `id` for `via`, left held. */
  find(id: unknown, via: object | undefined): ToolCall | undefined {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || via === undefined) return undefined;
    const call = this.slots[slotOf(id, this.slots.length)];
    return call !== undefined && call.requestId === id && call.heldVia === via ? call : undefined;
  }

  /** Takes every call held for `via` (its connection closed), each given to `each`. */
  takeAll(via: object | undefined, each: (call: ToolCall) => void): void {
    if (via === undefined || this.held === 0) return;
    for (let at = 0; at < this.slots.length; at++) {
      const call = this.slots[at];
      if (call === undefined || call.heldVia !== via) continue;
      this.release(at, call);
      each(call);
    }
  }

  /** Empties the slot `at`, which holds `call`. */
  private release(at: number, call: ToolCall): void {
    this.slots[at] = undefined;
    this.held--;
    call.heldVia = undefined;
  }

  /** Twice the slots. Two ids in different slots of N are in different slots of 2N, so no call is displaced. */
  private grow(): void {
    const old = this.slots;
    this.slots = new Array<ToolCall | undefined>(old.length * 2).fill(undefined);
    for (const call of old) if (call !== undefined) this.slots[slotOf(call.requestId as number, this.slots.length)] = call;
  }
}

/** The slot of an integer id (negative ones too) in a power-of-two table. */
function slotOf(id: number, length: number): number {
  return ((id % length) + length) % length;
}
