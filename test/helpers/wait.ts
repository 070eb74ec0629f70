// Waiting for something the kernel or another process does: poll the condition until it
// holds or a deadline in seconds passes (never a count of event-loop turns, which a loaded
// machine can use up while a loopback datagram is still on its way).
export async function waitFor(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise<void>((r) => setTimeout(r, 5));
  }
}
