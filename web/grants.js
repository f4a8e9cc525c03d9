// The grants of a room access token (docs/protocol.md, "Room access tokens").

/**
 * What an access token lets this participant do (its payload's `video` grants), read
 * without checking the signature: the server checks it and enforces the grants; the
 * page only avoids asking for what it may not do (a camera it may not publish).
 */
export function tokenGrants(token) {
  const all = { canPublish: true, canSubscribe: true };
  if (!token) return all;
  try {
    const payload = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    const v = payload?.video ?? {};
    return { canPublish: v.canPublish !== false, canSubscribe: v.canSubscribe !== false };
  } catch {
    return all;
  }
}
