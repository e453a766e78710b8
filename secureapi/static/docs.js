// Starts Swagger UI on /docs. A file rather than an inline script, so that the page's
// Content-Security-Policy can refuse every inline script.
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: document.body.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // No call to the public validator service: the page works offline.
    validatorUrl: null,
    // The token stays in memory only, never in localStorage.
    persistAuthorization: false,
  });
});
