/**
 * Types of the package's main entry: the Node build (node.js) under Node, the browser build
 * (browser.js) for bundlers that honour the "browser" condition.
 */
export * from "./node.js";
