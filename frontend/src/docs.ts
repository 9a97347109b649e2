// The API page (/docs): Swagger UI (npm package swagger-ui-dist, bundled here by esbuild,
// so the page works offline) renders the dashboard's OpenAPI document, /openapi.json.
import SwaggerUIBundle from "swagger-ui-dist/swagger-ui-bundle.js";

SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null, // never contact the online validator: the dashboard is offline
  supportedSubmitMethods: [], // a reading page: "Try it out" would need the token
});
