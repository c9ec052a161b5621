/** Whether `promise` settles within a few microtask turns, i.e. before the event loop could run a thread-pool callback. */
export async function settlesInMicrotasks(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void promise.then(() => (settled = true));
  for (let i = 0; i < 10 && !settled; i++) await Promise.resolve();
  const result = settled;
  await promise;
  return result;
}
