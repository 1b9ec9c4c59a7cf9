// UUIDs as text, the one pattern every layer checks them with: namespace UUIDs from sysfs and the
// config (any case), reservation UUIDs in the super block (stored and shown in lower case).

/** `8e0c5b3a-1f7e-4c55-9d0e-2a6f3b1c4d5e`, in either case. */
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The nil UUID: what the kernel shows for a namespace label without one, and an unbound super block holds. */
export const NIL_UUID = '00000000-0000-0000-0000-000000000000';

export function isUuid(text: string): boolean {
  return UUID_PATTERN.test(text);
}

/** A UUID as this project writes it: lower case. */
export function isCanonicalUuid(text: string): boolean {
  return isUuid(text) && text === text.toLowerCase();
}
