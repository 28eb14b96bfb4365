/** Whether a route needs a valid token: it names tokenScopes, or `required` covers every non-public route. */
export function routeNeedsToken(route: { readonly public: boolean; readonly tokenScopes?: readonly string[] | undefined }, required: boolean): boolean {
  return route.tokenScopes !== undefined || (required && !route.public);
}
