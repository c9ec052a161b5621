/**
 * Arrow keys in a radio group of buttons (WAI-ARIA radio group): Left/Up and Right/Down move to the
 * previous and next option and choose it, Home and End the first and last. Tab enters the group on the
 * checked option (the others have tabindex -1).
 */
export function radioKeys(event: KeyboardEvent): void {
  const group = event.currentTarget as HTMLElement;
  const radios = [...group.querySelectorAll<HTMLButtonElement>('[role="radio"]')];
  const current = radios.indexOf(document.activeElement as HTMLButtonElement);
  if (current < 0) return;
  const moves: Record<string, number> = { ArrowRight: current + 1, ArrowDown: current + 1, ArrowLeft: current - 1, ArrowUp: current - 1, Home: 0, End: radios.length - 1 };
  const next = moves[event.key];
  if (next === undefined) return;
  event.preventDefault();
  const target = radios[(next + radios.length) % radios.length]!;
  target.focus();
  target.click();
}
