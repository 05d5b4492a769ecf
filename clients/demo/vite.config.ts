import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// A static bundle: open dist/index.html from any path (base "./"); nothing is
// fetched from elsewhere at run time.
export default defineConfig({
  base: "./",
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: true,
  },
  preview: {
    host: "127.0.0.1",
  },
});
